"""``recgraph serve`` and the serve step of ``recgraph quickstart``, and every command's help."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import typer

from recgraph.cli.main import app, main
from recgraph.cli.serve_commands import banner, plan_serving
from recgraph.pipeline import Pipeline
from tests.serving.app_fixtures import served, served_template  # noqa: F401


@pytest.fixture
def busy_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("command", ["serve", "quickstart"])
def test_a_busy_port_is_reported_before_any_work(command, busy_port, tmp_path, capsys):
    db = tmp_path / "store.db"
    args = [command, "--port", str(busy_port), "--db", f"sqlite:///{db}",
            "--registry", str(tmp_path / "models")]  # fmt: skip
    start = time.perf_counter()
    assert main(args) == 2
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err
    assert f"port {busy_port}" in err and "--port" in err and "Errno" not in err
    assert not db.exists() and not (tmp_path / "models").exists()  # nothing was done


def test_the_banner_shows_no_password_and_no_token_it_was_given(monkeypatch):
    monkeypatch.setenv("RECGRAPH_API_TOKEN", "token-from-the-environment")
    url = "postgresql+psycopg://rec:hunter2@db.test/rec"
    plan = plan_serving(None, url, "127.0.0.1", 0, None)
    try:
        text = "\n".join(banner(plan))
        assert not plan.generated_token and plan.settings.token() == "token-from-the-environment"
        assert "hunter2" not in text and "token-from-the-environment" not in text
        assert "rec:***@db.test" in text
    finally:
        plan.sock.close()
    monkeypatch.delenv("RECGRAPH_API_TOKEN")
    made_up = plan_serving(None, url, "127.0.0.1", 0, None)
    try:
        assert made_up.generated_token and f"#token={made_up.settings.token()}" in "\n".join(
            banner(made_up)
        )
    finally:
        made_up.sock.close()


def _wait_for(url: str, check, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check(httpx.get(url, timeout=2)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer as expected within {timeout}s")


@pytest.mark.slow
def test_serve_with_workers_logs_the_hot_reload_and_keeps_secrets(served):  # noqa: F811
    settings, registry = served
    port = free_port()
    token = "env-token-never-printed"
    env = {**os.environ, "RECGRAPH_API_TOKEN": token, "RECGRAPH_MAX_K": "7",
           "RECGRAPH_PROGRESS": "0"}  # fmt: skip
    command = [sys.executable, "-m", "recgraph.cli.main", "serve", "--port", str(port),
               "--registry", registry.root, "--db", settings.database_url,
               "--poll-seconds", "0.3", "--workers", "2"]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/healthz", lambda r: r.json().get("model_version") == "v1")
        # settings from the environment reached the workers: max_k and the token
        schema = httpx.get(f"{base}/openapi.json").json()
        k = next(
            p for p in schema["paths"]["/v1/users/{user}/feed"]["get"]["parameters"]
            if p["name"] == "k"
        )  # fmt: skip
        assert k["schema"]["anyOf"][0]["maximum"] == 7
        reload = httpx.post(f"{base}/v1/admin/reload", headers={"Authorization": f"Bearer {token}"})
        assert reload.status_code == 200
        model = Pipeline.load(registry.local_copy("v1") / "model")
        registry.publish(model, data=model.snapshots, promote=True)
        for _ in range(6):  # both workers poll; any of them may answer
            _wait_for(f"{base}/healthz", lambda r: r.json().get("model_version") == "v2")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
    assert "v1 -> v2" in err, err
    assert token not in out + err
    assert f"{base}/" in out and "not shown" in out


def _commands(group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if hasattr(command, "commands"):  # a group (typer ships its own click)
            yield from _commands(command, (*prefix, name))


def test_help_at_80_columns_cuts_nothing(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    root = typer.main.get_command(app)
    checked = 0
    for path, command in _commands(root):
        assert main([*path, "--help"]) == 0
        text = capsys.readouterr().out
        assert "…" not in text, f"recgraph {' '.join(path)} --help cuts text:\n{text}"
        flat = re.sub(r"\s+", " ", text)
        for param in command.params:
            default = param.default
            if isinstance(default, str) and default and param.show_default is not False:
                assert default in flat, f"{' '.join(path)} {param.name}: {default!r} not whole"
        checked += 1
    assert checked >= 20
