"""Whether a process of this host still runs, for the server's workers and the registry's
publishers: one answer to "is this pid alive" (a zombie is not), two callers that must err
on opposite sides when it cannot be told."""

from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int, *, unknown: bool) -> bool:
    """Whether process ``pid`` runs; a zombie (killed, not yet reaped) counts as gone, as do
    ``pid <= 0`` (no process named).

    ``unknown`` is the answer when it exists but ``/proc`` cannot say whether it is a
    zombie: the balancer passes ``False`` (a slot it cannot vouch for is never counted), the
    registry's retention ``True`` (a publisher it cannot vouch for keeps its files).
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # (a pid past the C int: none such)
        return False
    except PermissionError:
        pass  # it exists, another user's
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return unknown
