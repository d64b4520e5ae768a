"""The ``reload`` phase's publisher for ``load.py``: a process of its own (as a training job
would be) that loads ``v1`` of a registry, then publishes it again as the current version each
time it is told to."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path

from common import stop_process

PUBLISHER = """
import sys
sys.path.insert(0, sys.argv[2])
from common import Republisher
copy = Republisher(sys.argv[1])
print("ready", flush=True)
for _ in range(int(sys.argv[3])):
    if sys.stdin.readline().strip() != "publish":
        break
    print(copy.publish(promote=True), flush=True)
"""
#: Seconds the publisher process may take to load ``v1`` (imports included), and to publish.
PUBLISHER_READY_SECONDS = 600
PUBLISH_SECONDS = 600
#: Seconds it may take to exit after its last publish (a model to free and an interpreter to
#: tear down: past 10 s on a machine at load average 18, where 10 s failed a run).
EXIT_SECONDS = 60


class Publisher:
    """A process that loads ``v1`` of the registry at ``root`` now and publishes it again as a
    new current version each time :meth:`publish` says so, ``times`` times at most (its imports
    and loading done before; it exits after the last).

    Every wait on it is bounded; a process that says nothing, exits early or
    fails raises :class:`RuntimeError`.
    """

    def __init__(self, root: str | Path, times: int = 1) -> None:
        self.left = times
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                PUBLISHER,
                str(root),
                str(Path(__file__).resolve().parent),
                str(times),
            ],  # fmt: skip
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="publisher-stdout", daemon=True)
        self._reader.start()
        try:
            if self._line(PUBLISHER_READY_SECONDS) != "ready":
                raise RuntimeError(f"the publisher process did not start ({self._exit()})")
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line.strip())
        self._lines.put("")  # end of output: the process exited (or closed it)

    def _line(self, timeout: float) -> str:
        """The process's next line ("" once it has said all), within ``timeout`` seconds."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"the publisher process said nothing in {timeout:g} s") from None

    def _exit(self) -> str:
        try:
            return f"exit status {self.process.wait(timeout=EXIT_SECONDS)}"
        except subprocess.TimeoutExpired:
            return "still running"

    def publish(self) -> str:
        """Publish and promote; the new version's name (after the last of ``times``, once the
        process has exited with 0)."""
        self.process.stdin.write("publish\n")
        self.process.stdin.flush()
        version = self._line(PUBLISH_SECONDS)
        self.left -= 1
        if not version:
            raise RuntimeError(f"the publisher process did not publish ({self._exit()})")
        if self.left == 0 and (status := self._exit()) != "exit status 0":
            raise RuntimeError(f"the publisher process did not publish ({status})")
        return version

    def close(self) -> None:
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        stop_process(self.process, timeout=20)
        self._reader.join(timeout=10)  # it reads up to the end of the exited process's output
        if not self._reader.is_alive():
            self.process.stdout.close()
