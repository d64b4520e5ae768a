"""Registry retention: keep the newest versions and the current one, remove what killed runs left.

A registry only grows unless something removes versions: at a 2-minute
training cadence about 100 MB an hour. :func:`gc` keeps the newest ``keep``
complete versions and the current one (which may be older, after a
rollback), and removes the rest, each manifest first so that readers see a
version whole or not at all. Versions without a manifest are publishes that
are under way or were killed: a publisher leaves a claim in the version's
folder (host, pid, start time; see :meth:`ModelRegistry.publish`), and such a
version is removed once that process no longer runs on this host, or, when
it cannot be checked (another host, or no claim), once it is older than
``grace_seconds``. ``recgraph train``, ``recgraph run`` and ``recgraph
registry gc`` call it after each publish.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime

from recgraph.errors import ConfigError
from recgraph.serving.processes import process_alive
from recgraph.serving.registry import MANIFEST_FILE, PUBLISHING_PREFIX, ModelRegistry

#: An incomplete version whose publisher cannot be checked is left alone this long (seconds).
INCOMPLETE_GRACE_SECONDS = 3600.0
_VERSION = re.compile(r"^v\d+$")


def _is_version(name: str) -> bool:
    return bool(_VERSION.match(name))


@dataclass
class GcReport:
    """What :meth:`ModelRegistry.gc` removed (or, with ``dry_run``, would remove)."""

    removed: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    current: str | None = None
    dry_run: bool = False

    def describe(self) -> str:
        """One line for logs and the CLI."""
        verb = "would remove" if self.dry_run else "removed"
        parts = [
            f"{verb} {len(self.removed)} old version(s)"
            + (f" ({', '.join(self.removed)})" if self.removed else ""),
            f"{len(self.incomplete)} incomplete"
            + (f" ({', '.join(self.incomplete)})" if self.incomplete else ""),
            f"kept {', '.join(self.kept) or 'none'} (current {self.current or 'none'})",
        ]
        return "; ".join(parts)


def gc(
    registry: ModelRegistry,
    keep: int,
    *,
    dry_run: bool = False,
    grace_seconds: float = INCOMPLETE_GRACE_SECONDS,
) -> GcReport:
    """Remove old versions: keep the newest ``keep`` complete ones and the current one.

    Incomplete versions (no manifest: a publish that was killed) are removed
    too, once their publisher is known to be gone: the claim it left names a
    process of this host that no longer runs, or (another host, no claim)
    it is older than ``grace_seconds``. A publish in progress is never
    touched. A complete version is removed manifest first, so readers see
    it whole or not at all.

    Parameters
    ----------
    keep
        How many of the newest complete versions to keep (at least 1).
    dry_run
        Only report what would be removed.
    grace_seconds
        How old an incomplete version of unknown origin must be to go.
    """
    if keep < 1:
        raise ConfigError(f"keep must be at least 1, not {keep}")
    complete = registry.list_versions()
    current = registry.current_version()
    kept = set(complete[-keep:]) | ({current} if current else set())
    old = [v for v in complete if v not in kept]
    incomplete = [
        v for v in _incomplete_versions(registry) if _abandoned(registry, v, grace_seconds)
    ]
    report = GcReport(
        removed=old,
        incomplete=incomplete,
        kept=[v for v in complete if v in kept],
        current=current,
        dry_run=dry_run,
    )
    if dry_run:
        return report
    for version in old:
        folder = registry.version_path(version)
        # manifest first: from this moment the version is not listed nor loadable
        try:
            registry.fs.rm_file(posixpath.join(folder, MANIFEST_FILE))
        except FileNotFoundError:
            pass
        _remove(registry, folder)
    for version in incomplete:
        _remove(registry, registry.version_path(version))
    if not registry.is_local:
        for version in [*old, *incomplete]:
            shutil.rmtree(registry.cache_path(version), ignore_errors=True)
    return report


def _incomplete_versions(registry: ModelRegistry) -> list[str]:
    """Version folders without a manifest (being published, or left by a killed publish)."""
    folder = registry.versions_root
    registry.fs.invalidate_cache(folder)
    if not registry.fs.exists(folder):
        return []
    names = [posixpath.basename(p.rstrip("/")) for p in registry.fs.ls(folder, detail=False)]
    complete = set(registry.list_versions())
    return sorted(
        (n for n in names if _is_version(n) and n not in complete),
        key=lambda n: int(n[1:]),
    )


def _abandoned(registry: ModelRegistry, version: str, grace_seconds: float) -> bool:
    """Whether nobody is publishing the incomplete ``version`` any more."""
    folder = registry.version_path(version)
    claims = registry.fs.glob(posixpath.join(folder, f"{PUBLISHING_PREFIX}*"))
    started: float | None = None
    for path in claims:
        try:
            raw = registry.fs.cat_file(path)
        except FileNotFoundError:
            continue
        try:
            claim = json.loads(raw or b"")
            host, pid, started = claim["host"], int(claim["pid"]), float(claim["started_at"])
        except (ValueError, KeyError, TypeError):
            continue
        if host == socket.gethostname():
            return not process_alive(pid, unknown=True)  # unsure: its files stay
    if started is None:
        started = _modified(registry, folder)
    return started is not None and time.time() - started > grace_seconds


def _modified(registry: ModelRegistry, folder: str) -> float | None:
    """When ``folder`` last changed (unix seconds), if the filesystem says."""
    if registry.is_local:
        try:
            return os.stat(folder).st_mtime
        except OSError:
            return None
    try:
        info = registry.fs.info(folder)
    except (OSError, ValueError):
        return None
    moment = info.get("mtime") or info.get("LastModified") or info.get("created")
    if isinstance(moment, datetime):
        return moment.timestamp()
    return float(moment) if isinstance(moment, int | float) else None


def _remove(registry: ModelRegistry, folder: str) -> None:
    try:
        if registry.fs.exists(folder):
            registry.fs.rm(folder, recursive=True)
    except OSError:
        pass  # what is left is found again, and removed, by the next pass


__all__ = ["INCOMPLETE_GRACE_SECONDS", "GcReport", "gc"]
