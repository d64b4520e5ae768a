"""``benchmarks/load.py``'s open-loop generator (on uvloop, as it runs) against stand-in servers:
every request is accounted for (answered or an error) and the run ends."""

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
load = pytest.importorskip("load")


def response(body: bytes, close: bool = False, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
    return head.encode() + (b"\r\nconnection: close" if close else b"") + b"\r\n\r\n" + body


async def run_against(
    answer, die_after: int | None = None, close_every: int | None = None, status: str = "200 OK"
) -> dict:
    """``open_loop`` (100 requests) against a server answering ``answer`` to each request,
    which closes its socket and every connection after ``die_after`` answers, and closes
    the connection of each ``close_every``-th answer after it, saying so in the answer."""
    served = 0
    writers = []
    server = None

    async def handle(reader, writer):
        nonlocal served
        writers.append(writer)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                served += 1
                close = close_every is not None and served % close_every == 0
                writer.write(response(answer, close, status))
                if close:
                    await writer.drain()
                    writer.close()
                    return
                if die_after is not None and served == die_after:
                    server.close()
                    for other in writers:
                        other.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    paths = [f"/v1/users/{i}/feed?k=10" for i in range(10)]
    return await load.open_loop(f"http://127.0.0.1:{port}", paths, 200, 0.5, connections=4)


@pytest.fixture
def short_timeout(monkeypatch):
    monkeypatch.setattr(load, "TIMEOUT", 1.0)


def test_well_formed_answers_are_all_counted(short_timeout):
    result = load.run_loop(run_against(b'{"model_version":"v1","results":[]}'))
    assert result["ok"] == 100 and result["errors"] == 0
    assert result["versions_seen"] == {"v1": 100}
    # latency runs from the due time or the send, whichever came first: never negative
    assert result["p50_ms"] >= 0


def test_an_answer_without_its_version_is_a_counted_error(short_timeout):
    result = load.run_loop(run_against(b'{"results":[]}'))
    assert result["ok"] == 0 and result["errors"] == 100
    assert "unreadable answer" in result["error_samples"][0]


def test_a_server_that_dies_mid_run_ends_the_run_with_errors(short_timeout):
    result = load.run_loop(run_against(b'{"model_version":"v1"}', die_after=30))
    assert result["ok"] + result["errors"] == 100
    assert result["ok"] <= 30 and result["errors"] >= 70


@pytest.mark.slow
def test_the_reload_phase_publishes_from_a_process_of_its_own(served, monkeypatch):
    """The publisher loads ``v1`` in its own process before it is asked, then publishes it
    again as the current version: nothing of it runs in the generator's interpreter."""
    from recgraph.serving.registry import ModelRegistry

    _, registry = served
    # the child imports this checkout, as load.py's own children do
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2] / "src"))
    publisher = load.Publisher(registry.root)
    try:
        assert publisher.process.poll() is None  # loaded, alive, waiting to be told
        assert registry.current_version() == "v1"  # ready, nothing published yet
        assert publisher.publish() == "v2"
        assert publisher.process.returncode == 0  # it published and exited on its own
    finally:
        publisher.close()
    assert ModelRegistry(registry.root).current_version() == "v2"


@pytest.mark.slow
def test_a_publisher_asked_several_times_publishes_as_many_versions(served, monkeypatch):
    _, registry = served
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2] / "src"))
    publisher = load.Publisher(registry.root, times=2)
    try:
        assert publisher.publish() == "v2"
        assert publisher.process.poll() is None  # one more to come
        assert publisher.publish() == "v3"
        assert publisher.process.returncode == 0
    finally:
        publisher.close()
    assert registry.current_version() == "v3"


def test_each_switch_is_found_in_the_answers_with_the_worst_latency_around_it():
    """Versions by due time (10 requests/s): v2 from 1.0 s on one worker and 1.5 s on the
    other; v3 from 3.0 s. A slow answer at 1.2 s is v2's switch, one at 5.5 s none."""
    version = ["v1"] * 10 + ["v2", "v1"] * 3 + ["v2"] * 14 + ["v3"] * 30
    latency = np.full(len(version), 5.0)
    latency[12], latency[55] = 300.0, 900.0
    version[13] = None  # an error: no version
    found = load.switches(
        {"version": version, "latency_ms": latency, "rate": 10.0}, ["v2", "v3"], margin=0.5
    )
    assert [(s["version"], s["first_answer_s"], s["last_old_answer_s"]) for s in found] == [
        ("v2", 1.0, 1.5),
        ("v3", 3.0, 3.0),
    ]
    assert [s["stall_ms"] for s in found] == [300.0, 5.0]


def test_a_timeline_with_unanswered_requests_is_valid_json():
    import json

    timeline = {"rate": 10.0, "version": ["v1", None], "latency_ms": np.array([5.123, np.nan])}
    text = json.dumps(load.timeline_for_json(timeline), allow_nan=False)
    assert json.loads(text)["latency_ms"] == [5.12, None]


@pytest.mark.slow
def test_a_publisher_that_cannot_load_v1_raises_at_once(tmp_path, monkeypatch):
    """No ``v1`` to load: the process exits, and the generator hears of it (no wait for a
    line that never comes, no run that goes on without a publisher)."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2] / "src"))
    with pytest.raises(RuntimeError, match="did not start .*exit status [1-9]"):
        load.Publisher(tmp_path / "models")


def test_a_connection_the_server_sheds_after_a_whole_answer_is_replaced_without_an_error(
    short_timeout,
):
    """An answer saying ``Connection: close`` (a worker evening out its connections),
    then the close: the answer counts, the connection is replaced and counted as shed."""
    result = load.run_loop(run_against(b'{"model_version":"v1"}', close_every=7))
    assert result["ok"] == 100 and result["errors"] == 0, result["error_samples"]
    assert result["connections_shed"] == 100 // 7


def test_an_error_answer_that_closes_its_connection_is_not_counted_as_shed(short_timeout):
    """uvicorn says ``Connection: close`` on a 4xx/5xx answer too: an error, not shedding."""
    result = load.run_loop(
        run_against(b'{"detail":"busy"}', close_every=7, status="503 Service Unavailable")
    )
    assert result["ok"] == 0 and result["errors"] == 100
    assert result["connections_shed"] == 0


def test_the_restarts_of_the_servers_workers_are_found_in_its_stderr(tmp_path):
    from load_workers import restarts

    stderr = tmp_path / "server.stderr"
    stderr.write_text(
        "INFO:     Started parent process [10]\n"
        "INFO:     Child process [11] died\n"
        "INFO:     Waiting for child process [12]\n"
    )
    assert restarts(stderr) == ["INFO:     Child process [11] died"]
    assert restarts(tmp_path / "missing") == []


def test_a_failed_runs_server_stderr_is_shown_by_its_end(tmp_path):
    from load_workers import stderr_tail

    stderr = tmp_path / "server.stderr"
    stderr.write_text("x" * 5000 + "Traceback: the end\n")
    assert stderr_tail(stderr, 100) == ("x" * 5000 + "Traceback: the end\n")[-100:]
    assert stderr_tail(tmp_path / "missing").startswith("(unreadable: ")
