"""Files that appear whole or not at all: the one atomic-write helper of recgraph.

Every file recgraph writes for others to read (exports, split files, model
weights and manifests, pipeline files, the registry's pointer) goes through
:func:`atomic_path` or :func:`atomic_write`: the bytes go to a temporary file
beside the target, which replaces the target in one ``os.replace`` only when
writing finished without error. A reader sees the old file or the new one,
never a part; a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import scipy.sparse as sp

from recgraph.errors import InputError


@contextmanager
def atomic_path(target: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``target`` to write; it replaces ``target`` when the block ends.

    For writers that want a path (Parquet, ``np.savez``). The file gets mode
    0644 (``mkstemp`` makes 0600, which a server running as another user
    could not read). ``fsync`` forces the bytes to disk before the rename
    (for pointers that must survive a power cut).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o644)
        yield tmp
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(
    target: str | os.PathLike,
    mode: str = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    fsync: bool = False,
) -> Iterator[IO[Any]]:
    """An open handle on a temporary file that replaces ``target`` when the block ends.

    Examples
    --------
    >>> with atomic_write("out.json", "w", encoding="utf-8") as handle:  # doctest: +SKIP
    ...     handle.write("{}")
    """
    with (
        atomic_path(target, fsync=fsync) as tmp,
        open(tmp, mode, encoding=encoding, newline=newline) as handle,
    ):
        yield handle


def write_manifest(target: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Write a saved thing's JSON manifest atomically.

    Savers write it last: its presence marks a complete folder.
    """
    with atomic_write(target, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(manifest, indent=2))


@contextmanager
def saved_folder(
    path: str | os.PathLike, manifest_file: str, manifest: Callable[[], dict[str, Any]]
) -> Iterator[Path]:
    """The folder ``path`` (made if missing) for a saved thing's files; when the block ends
    without error, ``manifest()`` is written there as ``manifest_file`` (:func:`write_manifest`),
    last: its presence marks a complete folder, so a failed save never looks complete.

    Examples
    --------
    >>> with saved_folder("out", "index.json", index.manifest) as folder:  # doctest: +SKIP
    ...     index._save_state(folder)
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    write_manifest(folder / manifest_file, manifest())


def write_json(target: str | os.PathLike, payload: Any, *, indent: int = 2) -> str:
    """Write ``payload`` as indented JSON (a report, say) atomically; return the text written.

    A target that is not a regular file (``/dev/stdout``, a pipe) is written straight
    through, and a symlink's file is replaced, not the link: ``--json`` reports go
    wherever the user pointed them.
    """
    text = json.dumps(payload, indent=indent) + "\n"
    path = Path(target)
    if path.exists() and not Path(os.path.realpath(path)).is_file():
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return text
    with atomic_write(os.path.realpath(path), "w", encoding="utf-8") as handle:
        handle.write(text)
    return text


def read_manifest(
    manifest_path: str | os.PathLike,
    what: str,
    expected_version: int,
    hint: str = "",
    *,
    also_reads: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Read a manifest written by :func:`write_manifest` and check its format version.

    ``what`` names the saved thing in errors ("model", "index"); ``hint``
    says how to get a readable one (appended to the version error);
    ``also_reads``: earlier versions the reader still understands.
    """
    manifest_path = Path(manifest_path)
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path}: no saved {what} here")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}", path=manifest_path) from None
    check_format_version(manifest, manifest_path, expected_version, hint, also_reads=also_reads)
    return manifest


def check_format_version(
    manifest: Any,
    manifest_path: str | os.PathLike,
    expected_version: int,
    hint: str = "",
    *,
    also_reads: tuple[int, ...] = (),
) -> None:
    """Refuse (:class:`InputError`) a manifest whose ``format_version`` is not
    ``expected_version`` nor one of ``also_reads``: a newer writer's format would be misread.
    The rule of :func:`read_manifest`, for a manifest read from elsewhere (a registry's
    object store)."""
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != expected_version and version not in also_reads:
        raise InputError(
            f"format_version {version} is not supported (expected {expected_version}{hint})",
            path=manifest_path,
            field="format_version",
        )


def save_arrays(target: str | os.PathLike, arrays: dict[str, Any], prefix: str = "") -> None:
    """Write named arrays to one npz atomically; object arrays are refused (they need pickle)."""
    checked = {}
    for key, value in arrays.items():
        value = np.asarray(value)
        if value.dtype == object:
            raise TypeError(f"state array {key!r} has dtype object; it would need pickle")
        checked[f"{prefix}{key}"] = value
    with atomic_write(target) as handle:
        np.savez(handle, **checked)


def load_arrays(source: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an npz written by :func:`save_arrays`, read fully (never with pickle)."""
    with np.load(source, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def csr_arrays(name: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    """A CSR matrix as the arrays ``name.indptr``, ``name.indices`` and ``name.data`` of a state."""
    return {
        f"{name}.indptr": matrix.indptr,
        f"{name}.indices": matrix.indices,
        f"{name}.data": matrix.data,
    }


def csr_from_arrays(
    arrays: Mapping[str, np.ndarray], name: str, shape: tuple[int, int]
) -> sp.csr_matrix:
    """The matrix :func:`csr_arrays` stored under ``name``; without ``name.data`` (a binary
    matrix saved by an earlier version) every stored entry is 1."""
    indices = arrays[f"{name}.indices"]
    data = arrays.get(f"{name}.data")
    if data is None:
        data = np.ones(len(indices), np.float32)
    return sp.csr_matrix((data, indices, arrays[f"{name}.indptr"]), shape=shape)


__all__ = [
    "atomic_path",
    "atomic_write",
    "csr_arrays",
    "csr_from_arrays",
    "load_arrays",
    "read_manifest",
    "save_arrays",
    "saved_folder",
    "write_json",
    "write_manifest",
]
