"""process_alive: a running pid, a reaped one, a zombie, and /proc that cannot say."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recgraph.serving import processes
from recgraph.serving.processes import process_alive


@pytest.mark.parametrize("unknown", [True, False])
def test_a_running_process_is_alive_and_no_pid_or_a_reaped_one_is_not(unknown):
    assert process_alive(os.getpid(), unknown=unknown)
    assert not process_alive(0, unknown=unknown) and not process_alive(-1, unknown=unknown)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid, unknown=unknown)


def test_a_killed_child_not_yet_reaped_is_gone():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        child.kill()
        stat = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 10
        while " Z " not in stat.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not process_alive(child.pid, unknown=True)  # a zombie, not yet waited for
    finally:
        child.wait()


@pytest.mark.parametrize("unknown", [True, False])
def test_without_proc_a_process_that_exists_is_what_the_caller_says(monkeypatch, unknown):
    class NoProc(type(Path())):
        def read_text(self, *args, **kwargs):
            raise PermissionError("no /proc")

    monkeypatch.setattr(processes, "Path", NoProc)
    assert process_alive(os.getpid(), unknown=unknown) is unknown
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid, unknown=unknown)  # no such process: gone either way


@pytest.mark.parametrize("unknown", [True, False])
def test_a_pid_past_what_the_system_can_name_is_not_alive(unknown):
    """(a corrupt publish claim's pid must not crash retention: os.kill raises OverflowError)"""
    assert not process_alive(2**70, unknown=unknown)
