"""The model registry: versioned model folders and an atomically switched ``current`` pointer.

A registry is a folder, local or at any fsspec URL (``s3://bucket/models``,
``memory://`` in tests)::

    ROOT/
      CURRENT                      {"version": "v3", "updated_at": "..."}
      versions/v1/manifest.json    what, from which data, how good (written last)
      versions/v1/model/...        Retriever.save output (model.json + state.npz)
      versions/v1/index/...        optional nearest-neighbour index (Index.save)

A version is complete once its ``manifest.json`` exists: the manifest is
written after every other file, and only versions with one are listed,
loaded or promoted; promoting (or rolling back to) a version also checks
that loading it with this code gets past every saved header, with the
loaders' own rules (:meth:`ModelRegistry.check_loadable`).
The ``CURRENT`` pointer is one small object replaced in a single step (a
temporary file renamed over it on a local disk; a single PUT on an object
store, which readers see whole or not at all), so a reader sees the old
version or the new one, never a mix. Serving polls :meth:`current_version`
(one small read) and loads a new version beside the old one before swapping.

Versions are immutable, so a remote version is downloaded once into a local
cache and loaded from there. Nothing is pickled: JSON, npz and the index
libraries' own formats.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recgraph.data.interactions import Interactions
from recgraph.data.snapshot import data_snapshot
from recgraph.errors import ConfigError, InputError, RecgraphError
from recgraph.files import atomic_write, check_format_version, read_manifest
from recgraph.settings import registry_root

if TYPE_CHECKING:
    from recgraph.index.base import Index
    from recgraph.retrieval.base import Retriever

MANIFEST_FORMAT = 1
POINTER_FILE = "CURRENT"
VERSIONS_DIR = "versions"
MANIFEST_FILE = "manifest.json"
MODEL_DIR = "model"
INDEX_DIR = "index"
#: Marks a fully downloaded version in the local cache.
COMPLETE_MARKER = ".complete"
#: Names the process publishing a version (JSON: host, pid, started_at) until its manifest exists.
PUBLISHING_PREFIX = ".publishing-"
_VERSION_PATTERN = re.compile(r"^v(\d+)$")


class RegistryError(RecgraphError, LookupError):
    """A version that does not exist, or a registry with nothing to load."""


def default_registry_root() -> str:
    """The ``registry`` setting: ``$RECGRAPH_REGISTRY`` if set, else ``./models``."""
    return registry_root()


class ModelRegistry:
    """Versioned models under one root, and which of them is current.

    Parameters
    ----------
    root
        A local folder or an fsspec URL (``s3://bucket/prefix``,
        ``memory://name``); default :func:`default_registry_root`.
    storage_options
        Passed to fsspec (credentials, endpoint, ...).
    cache_dir
        Where remote versions are downloaded (default
        ``~/.cache/recgraph/registry``); unused for local roots.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        try:
            import fsspec
        except ImportError as exc:  # pragma: no cover - fsspec is in the serve extra
            raise ConfigError(
                "the model registry needs fsspec: pip install 'recgraph[serve]'"
            ) from exc
        self.root = str(root if root is not None else default_registry_root())
        self.fs, self._base = fsspec.core.url_to_fs(self.root, **dict(storage_options or {}))
        self._base = self._base.rstrip("/") or "/"
        self.is_local = "file" in _protocols(self.fs)
        #: this user's folder of downloaded versions (one subfolder per registry, :attr:`key`)
        self.cache_root = Path(cache_dir or Path.home() / ".cache" / "recgraph" / "registry")
        self._cache = self.cache_root / self.key

    @property
    def key(self) -> str:
        """A short stable name of the registry's storage: its protocol and normalised base path,
        so that ``models``, ``./models`` and the absolute path of one folder share it (the
        download cache and the host's load lock are named by it)."""
        where = f"{_protocols(self.fs)[0]}://{posixpath.normpath(self._base)}"
        return hashlib.sha256(where.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"ModelRegistry({self.root!r})"

    # ------------------------------------------------------------------ paths
    def _path(self, *parts: str) -> str:
        return posixpath.join(self._base, *parts)

    @property
    def versions_root(self) -> str:
        """The folder holding one folder per version (a path of the registry's filesystem)."""
        return self._path(VERSIONS_DIR)

    def cache_path(self, version: str) -> Path:
        """Where a remote ``version`` is (or would be) downloaded on this machine."""
        return self._cache / check_version_name(version)

    def version_path(self, version: str) -> str:
        """Where ``version`` lives (a path of the registry's filesystem)."""
        return self._path(VERSIONS_DIR, check_version_name(version))

    # ------------------------------------------------------------------ reading
    def list_versions(self) -> list[str]:
        """Complete versions (those with a manifest), oldest first."""
        self.fs.invalidate_cache(self._path(VERSIONS_DIR))
        pattern = self._path(VERSIONS_DIR, "*", MANIFEST_FILE)
        names = [posixpath.basename(posixpath.dirname(p)) for p in self.fs.glob(pattern)]
        return sorted((n for n in names if _VERSION_PATTERN.match(n)), key=_version_number)

    def manifest(self, version: str) -> dict[str, Any]:
        """The manifest of ``version``; :class:`RegistryError` if there is none."""
        path = self._path(VERSIONS_DIR, check_version_name(version), MANIFEST_FILE)
        raw = self._read(path)
        if raw is None:
            raise RegistryError(f"no version {version!r} in the registry {self.root}")
        return _parse_json(raw, path)

    def current_version(self) -> str | None:
        """The version ``CURRENT`` points to, or ``None``; one small read, for reload polling."""
        path = self._path(POINTER_FILE)
        raw = self._read(path)
        if raw is None:
            return None
        version = _parse_json(raw, path).get("version")
        if not isinstance(version, str) or not _VERSION_PATTERN.match(version):
            raise InputError(f"not a version name: {version!r}", path=path, field="version")
        return version

    def current(self) -> dict[str, Any] | None:
        """The manifest of the current version, or ``None`` when nothing is current."""
        version = self.current_version()
        return None if version is None else self.manifest(version)

    def resolve(self, version: str | None = None) -> str:
        """``version`` itself, or the current one; :class:`RegistryError` if neither exists."""
        if version is None:
            version = self.current_version()
            if version is None:
                raise RegistryError(
                    f"the registry {self.root} has no current version: publish or promote one"
                )
        return check_version_name(version)

    def load(self, version: str | None = None) -> tuple[Retriever, dict[str, Any]]:
        """Load a model.

        Parameters
        ----------
        version
            A version name; ``None`` loads the current one.

        Returns
        -------
        model, manifest
            The fitted retriever and the manifest of the version it came from
            (read before the model, so the two always match).
        """
        from recgraph.retrieval.base import Retriever

        version = self.resolve(version)
        manifest = self.manifest(version)
        folder = self.local_copy(version, manifest)
        return Retriever.load(folder / MODEL_DIR), manifest

    def load_index(self, version: str | None = None) -> Index | None:
        """The index published with ``version`` (default: current), or ``None`` if it has none."""
        from recgraph.index.base import Index

        version = self.resolve(version)
        manifest = self.manifest(version)
        if not manifest.get("index"):
            return None
        return Index.load(self.local_copy(version, manifest) / INDEX_DIR)

    def local_copy(self, version: str, manifest: Mapping[str, Any] | None = None) -> Path:
        """A local folder holding ``version``'s files: the folder itself on a local root,
        else a cached download (versions never change, so one download serves every load).

        Every load goes through here, so here the manifest's format is checked
        (:func:`check_manifest_format`, :class:`InputError`): a newer registry
        format is refused before anything it lists is read."""
        version = check_version_name(version)
        manifest = manifest if manifest is not None else self.manifest(version)
        check_manifest_format(manifest, self._path(VERSIONS_DIR, version, MANIFEST_FILE))
        if self.is_local:
            return Path(self.version_path(version))
        target = self._cache / version
        if (target / COMPLETE_MARKER).exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{version}."))
        try:
            for relative, info in manifest.get("files", {}).items():
                local = staging / relative
                local.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(posixpath.join(self.version_path(version), relative), str(local))
                _check_listed_size(self.version_path(version), relative, info, local.stat().st_size)
            (staging / COMPLETE_MARKER).touch()
            try:
                os.rename(staging, target)
            except OSError:  # another process finished the same download first
                if not (target / COMPLETE_MARKER).exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    # ------------------------------------------------------------------ writing
    def publish(
        self,
        model: Retriever,
        *,
        metrics: Mapping[str, Any] | None = None,
        data: Interactions | Mapping[str, Any] | None = None,
        index: Index | None = None,
        notes: str | None = None,
        promote: bool = False,
    ) -> str:
        """Store a fitted model as a new version.

        Parameters
        ----------
        model
            A fitted retriever; saved with ``model.save``.
        metrics
            Evaluation results to keep beside it (JSON-able; numpy scalars
            and arrays are converted, NaN becomes ``null``).
        data
            The training :class:`Interactions` (summarised by
            :func:`data_snapshot`), or an already computed snapshot.
        index
            A built nearest-neighbour index over the model's vectors.
        notes
            Free text for people (why this version exists).
        promote
            Make it current. The first version of an empty registry always
            becomes current, so a new registry can be served at once.

        Returns
        -------
        str
            The new version's name (``v1``, ``v2``, ...).
        """
        if not model.is_fitted:
            raise ConfigError(f"model {model.name!r} is not fitted: nothing to publish")
        if index is not None and not index.is_built:
            raise ConfigError(f"index {index.name!r} is not built: nothing to publish")
        snapshot = data_snapshot(data) if isinstance(data, Interactions) else data
        version = self._reserve_version()
        folder = self.version_path(version)
        try:
            with tempfile.TemporaryDirectory(prefix="recgraph-publish-") as tmp:
                staging = Path(folder) if self.is_local else Path(tmp)
                model.save(staging / MODEL_DIR)
                if index is not None:
                    index.save(staging / INDEX_DIR)
                files = _describe_files(staging)
                if not self.is_local:
                    for relative in files:
                        self.fs.put_file(str(staging / relative), posixpath.join(folder, relative))
            manifest = {
                "format_version": MANIFEST_FORMAT,
                "version": version,
                "model": model.name,
                "config": model.config.model_dump(mode="json"),
                "graph_kind": model.graph_kind,
                "n_users": model.n_users,
                "n_items": model.n_items,
                "created_at": _utc_iso(),
                "data": _jsonable(dict(snapshot)) if snapshot is not None else None,
                "metrics": _jsonable(dict(metrics or {})),
                "index": index.manifest() if index is not None else None,
                "files": files,
                "notes": notes,
                "recgraph_version": _package_version(),
            }
            # the manifest goes last: its presence is what makes the version exist
            self._write_atomic(
                posixpath.join(folder, MANIFEST_FILE), json.dumps(manifest, indent=2).encode()
            )
        except BaseException:
            self._remove(folder)
            raise
        self._drop_claim(folder)
        if promote or self.current_version() is None:
            self.set_current(version, check=False)  # written by this code just now
        return version

    def set_current(self, version: str, *, check: bool = True) -> None:
        """Point ``CURRENT`` at ``version`` (which must be complete), in one atomic step.

        A promotion or a rollback to an older version first checks that this code can
        read the version (:meth:`check_loadable`): a version written by a newer format,
        naming a kind of model this code does not know, holding a parameter it does not
        know, or missing a file, would otherwise be served misread or fail in every
        server that reloads it. A refused version leaves
        ``CURRENT`` as it was. ``check=False`` skips the check (a version just published
        by this code).
        """
        version = check_version_name(version)
        if check:
            self.check_loadable(version)
        else:
            self.manifest(version)  # raises if the version is absent or incomplete
        pointer = {"version": version, "updated_at": _utc_iso()}
        self._write_atomic(self._path(POINTER_FILE), json.dumps(pointer).encode())

    def check_loadable(self, version: str) -> dict[str, Any]:
        """``version``'s manifest, once loading it with this code would get past every
        saved header.

        Each rule is the loader's own: the registry manifest's format
        (:func:`check_manifest_format`, which :meth:`local_copy` applies too); each
        ``model.json``, ``index.json`` and ``ranker.json`` opened as ``load`` opens it
        (its format, the kind it names, and its config validated by that class, so a
        parameter this code does not know is refused, as loading refuses it); the
        ``pipeline.json`` format and its config through :func:`parse_pipeline`; each
        history's and graph's ``format_version``; and every file the manifest lists
        present. The classes named are imported (a model whose package is missing is
        refused, as loading refuses it); no state is read. Raises :class:`RegistryError`
        naming the version, the file and the reason.
        """
        version = check_version_name(version)
        manifest = self.manifest(version)  # raises if the version is absent or incomplete
        folder = self.version_path(version)
        try:
            check_manifest_format(manifest, posixpath.join(folder, MANIFEST_FILE))
            listed = manifest.get("files")
            if not isinstance(listed, Mapping) or not listed:
                raise InputError("the manifest lists no files", path=folder, field="files")
            present = self._files_under(folder)
            missing = sorted(relative for relative in listed if relative not in present)
            if missing:
                shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
                raise InputError(f"listed in the manifest but missing: {shown}", path=folder)
            if not self.is_local:  # a download checks each size (local_copy): so does this
                for relative, info in listed.items():
                    _check_listed_size(folder, relative, info, present[relative])
            readers = _saved_header_readers()
            headers = [r for r in listed if posixpath.basename(r) in readers]
            if not headers:
                raise InputError("no saved model header in the version", path=folder)
            with tempfile.TemporaryDirectory(prefix="recgraph-check-") as tmp:
                for relative in headers:
                    local = self._header_copy(folder, relative, Path(tmp))
                    try:
                        readers[posixpath.basename(relative)](local)
                    except ConfigError as exc:  # a class's config error names no file
                        if relative in str(exc):
                            raise
                        raise ConfigError(f"{posixpath.join(folder, relative)}: {exc}") from exc
        except (InputError, ConfigError, RegistryError) as exc:
            current = self.current_version()
            raise RegistryError(
                f"version {version} cannot be loaded by this recgraph "
                f"({_package_version()}): {exc}; current stays {current or '(none)'}"
            ) from exc
        return manifest

    def _files_under(self, folder: str) -> dict[str, int | None]:
        """Every file under ``folder`` (a path relative to it) and its size: one listing."""
        base = self.fs._strip_protocol(folder).rstrip("/") + "/"
        self.fs.invalidate_cache(folder)
        found = self.fs.find(folder, detail=True)
        return {
            self.fs._strip_protocol(p).removeprefix(base): info.get("size")
            for p, info in found.items()
        }

    def _header_copy(self, folder: str, relative: str, staging: Path) -> Path:
        """A local path to read ``folder/relative`` from: the file itself on a local root,
        else a copy in ``staging`` (headers are small JSON files)."""
        if self.is_local:
            return Path(folder) / relative
        local = staging / relative
        local.parent.mkdir(parents=True, exist_ok=True)
        raw = self._read(posixpath.join(folder, relative))
        if raw is None:
            raise InputError("listed in the manifest but missing", path=f"{folder}/{relative}")
        local.write_bytes(raw)
        return local

    # ------------------------------------------------------------------ storage
    def _read(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    def _write_atomic(self, path: str, payload: bytes) -> None:
        """Replace ``path`` so that readers see the old bytes or the new ones, never a part.

        Local folders use the shared :func:`recgraph.files.atomic_write`; other
        fsspec filesystems (object stores) have no rename, but write one
        object in a single request, which is just as atomic.
        """
        if self.is_local:
            with atomic_write(path, fsync=True) as handle:
                handle.write(payload)
        else:
            # object stores write one object in a single request: whole or not at all
            self.fs.pipe_file(path, payload)

    def _reserve_version(self) -> str:
        """The next free version name, claimed so two local publishers never share one."""
        self.fs.invalidate_cache(self._path(VERSIONS_DIR))
        existing = [
            posixpath.basename(p.rstrip("/"))
            for p in (
                self.fs.ls(self._path(VERSIONS_DIR), detail=False)
                if self.fs.exists(self._path(VERSIONS_DIR))
                else []
            )
        ]
        number = max((_version_number(n) for n in existing if _VERSION_PATTERN.match(n)), default=0)
        while True:
            number += 1
            version = f"v{number}"
            folder = self.version_path(version)
            if self.is_local:
                os.makedirs(os.path.dirname(folder), exist_ok=True)
                try:
                    os.mkdir(folder)  # atomic: fails if another publisher took it
                except FileExistsError:
                    continue
                self._claim(folder)
                return version
            # object stores have no atomic create: publishers to one bucket prefix
            # should be serialised (one training job); a unique claim narrows the race
            if self.fs.exists(folder):
                continue
            self._claim(folder)
            return version

    def _claim(self, folder: str) -> None:
        """Say who publishes into ``folder``, so that :meth:`gc` can tell a live publish from
        one whose process was killed."""
        claim = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time()}
        self.fs.pipe_file(
            posixpath.join(folder, f"{PUBLISHING_PREFIX}{uuid.uuid4().hex}.json"),
            json.dumps(claim).encode(),
        )

    def _drop_claim(self, folder: str) -> None:
        try:
            for path in self.fs.glob(posixpath.join(folder, f"{PUBLISHING_PREFIX}*")):
                self.fs.rm_file(path)
        except OSError:
            pass  # a leftover claim beside a manifest is harmless: the version is complete

    def _remove(self, folder: str) -> None:
        try:
            if self.fs.exists(folder):
                self.fs.rm(folder, recursive=True)
        except OSError:
            pass


# ---------------------------------------------------------------------- helpers
def check_version_name(version: str) -> str:
    """``version`` if it looks like ``v<number>`` (never a path), else :class:`InputError`."""
    if not isinstance(version, str) or not _VERSION_PATTERN.match(version):
        raise InputError(f"not a version name: {version!r} (expected v1, v2, ...)", field="version")
    return version


def check_manifest_format(manifest: Any, path: str) -> None:
    """Refuse (:class:`InputError`) a version manifest of a format this code does not read:
    the one rule, applied by every load (:meth:`ModelRegistry.local_copy`) and by
    :meth:`ModelRegistry.check_loadable`."""
    check_format_version(manifest, path, MANIFEST_FORMAT)


def _saved_header_readers() -> dict[str, Callable[[Path], Any]]:
    """File name -> what ``load`` does with that file before it reads any state: each
    raises (:class:`InputError`, :class:`ConfigError`) on a header this code would refuse
    or misread. The loaders' own functions, so the check and loading cannot disagree."""
    from recgraph.data.graph_csr import MANIFEST as GRAPH_FILE
    from recgraph.data.graph_csr import read_graph_manifest
    from recgraph.index.base import FORMAT_VERSION as INDEX_FORMAT
    from recgraph.index.base import INDEX_FILE, Index
    from recgraph.index.registry import available_indexes  # noqa: F401 - installs Index's names
    from recgraph.lazy_registry import open_saved
    from recgraph.pipeline.config import parse_pipeline
    from recgraph.pipeline.history import HISTORY_FORMAT, HISTORY_MANIFEST
    from recgraph.pipeline.pipeline import PIPELINE_ALSO_READS, PIPELINE_FILE, PIPELINE_FORMAT
    from recgraph.ranking.base import CONFIG_FILE as RANKER_FILE
    from recgraph.ranking.base import FORMAT_VERSION as RANKER_FORMAT
    from recgraph.ranking.base import Ranker
    from recgraph.ranking.registry import available_rankers  # noqa: F401 - installs Ranker's
    from recgraph.retrieval.base import ALSO_READS as MODEL_ALSO_READS
    from recgraph.retrieval.base import CONFIG_FILE as MODEL_FILE
    from recgraph.retrieval.base import FORMAT_VERSION as MODEL_FORMAT
    from recgraph.retrieval.base import Retriever
    from recgraph.retrieval.registry import available_retrievers  # noqa: F401 - installs

    def pipeline(path: Path) -> None:  # what Pipeline.load reads first
        manifest = read_manifest(path, "pipeline", PIPELINE_FORMAT, also_reads=PIPELINE_ALSO_READS)
        if not isinstance(manifest.get("config"), Mapping):
            raise InputError("no pipeline config", path=path, field="config")
        parse_pipeline(manifest["config"], source=str(path))

    return {
        MODEL_FILE: lambda path: open_saved(
            Retriever, Retriever, path, "model", MODEL_FORMAT, also_reads=MODEL_ALSO_READS
        ),
        INDEX_FILE: lambda path: open_saved(Index, Index, path, "index", INDEX_FORMAT),
        RANKER_FILE: lambda path: open_saved(Ranker, Ranker, path, "ranker", RANKER_FORMAT),
        PIPELINE_FILE: pipeline,
        HISTORY_MANIFEST: lambda path: read_manifest(path, "history", HISTORY_FORMAT),
        GRAPH_FILE: read_graph_manifest,
    }


def _check_listed_size(folder: str, relative: str, info: Any, size: int | None) -> None:
    """Refuse (:class:`RegistryError`) a file whose size is not the one its manifest lists:
    a truncated or half-replaced upload."""
    if not isinstance(info, Mapping) or size != info.get("bytes"):
        raise RegistryError(f"{folder}/{relative}: size differs from the manifest")


def _version_number(name: str) -> int:
    match = _VERSION_PATTERN.match(name)
    return int(match.group(1)) if match else -1


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _describe_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` (relative POSIX path) with its size and sha256."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.parent == folder and path.name.startswith(PUBLISHING_PREFIX):
            continue  # the publisher's claim, not part of the version
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        relative = path.relative_to(folder).as_posix()
        files[relative] = {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    return files


def _parse_json(raw: bytes, path: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON: {exc}", path=path) from None
    if not isinstance(value, dict):
        raise InputError("expected a JSON object", path=path)
    return value


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into plain JSON values (NaN -> None)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ConfigError(f"cannot store {type(value).__name__} in a manifest: {value!r}")


def _utc_iso(seconds: float | None = None) -> str | None:
    """ISO 8601 UTC time of epoch ``seconds`` (default now); ``None`` if out of range."""
    try:
        moment = datetime.now(UTC) if seconds is None else datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _package_version() -> str:
    from recgraph import __version__

    return __version__
