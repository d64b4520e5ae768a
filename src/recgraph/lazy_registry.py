"""Classes by name, imported only when first asked for.

The retriever, ranker and index registries share this: a name maps to
``"module:Class"``, so heavy packages (PyTorch, LightGBM, FAISS) stay unloaded
until a model that needs them is used, and the base classes never import the
modules that subclass them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from recgraph.errors import ConfigError
from recgraph.files import read_manifest

T = TypeVar("T")


class LazyRegistry(Generic[T]):
    """Names of ``kind`` (``"model"``, ``"ranker"``, ``"index"``) mapped to ``module:Class``.

    ``install_hint`` turns the :class:`ImportError` of a missing optional
    package into the advice that ends the error message.
    """

    def __init__(
        self,
        kind: str,
        targets: dict[str, str],
        install_hint: Callable[[ImportError], str] = lambda exc: (
            "install recgraph with the matching extra"
        ),
        plural: str | None = None,
    ) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.targets = targets
        self.install_hint = install_hint

    def names(self) -> list[str]:
        return sorted(self.targets)

    def register(self, name: str, target: str) -> None:
        """Make ``module:Class`` reachable as ``name`` (for plug-ins and tests)."""
        if target.count(":") != 1:
            raise ConfigError(
                f"{self.kind} {name!r}: target must be 'module:Class', got {target!r}"
            )
        self.targets[name] = target

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; a :class:`ConfigError` says what is unknown or missing."""
        try:
            target = self.targets[name]
        except KeyError:
            known = ", ".join(self.names())
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known {self.plural}: {known}"
            ) from None
        module_name, class_name = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"{self.kind} {name!r} needs a package that is not installed ({exc.name}); "
                f"{self.install_hint(exc)}"
            ) from exc
        return getattr(module, class_name)


def saved_class(base: Any, requested: type, name: str, package: str, path: object) -> Any:
    """The class a saved manifest names (``name``), through ``base.class_for_name``.

    ``requested`` is the class ``load`` was called on: loading a folder that
    holds another kind of model through a subclass is a :class:`TypeError`.
    ``package`` is what installs the registry (named in the error if it is not).
    """
    if base.class_for_name is None:  # pragma: no cover - the package installs it
        raise RuntimeError(f"import {package} to load saved {base.__name__} objects by name")
    klass = base.class_for_name(name)
    if requested is not base and not issubclass(klass, requested):
        raise TypeError(f"{path} holds a {klass.__name__}, not a {requested.__name__}")
    return klass


def saved_header(what: str, name: str, config: Any, version: int) -> dict[str, Any]:
    """The manifest keys :func:`open_saved` reads back: the format ``version``, the class's
    registry ``name`` under ``what`` and its ``config`` (a pydantic model, as JSON values)."""
    return {"format_version": version, what: name, "config": config.model_dump(mode="json")}


def open_saved(
    base: Any,
    requested: type,
    manifest_path: Path,
    what: str,
    version: int,
    *,
    also_reads: tuple[int, ...] = (),
) -> tuple[Any, dict[str, Any]]:
    """A saved object's manifest, and an instance of the class it names built from its config.

    The manifest (:func:`~recgraph.files.read_manifest`, format ``version``)
    names the class under ``what`` (``"model"``, ``"index"``, ``"ranker"``);
    :func:`saved_class` finds it through ``base``, whose package installs the
    registry. The caller loads the rest of the folder.
    """
    manifest = read_manifest(manifest_path, what, version, also_reads=also_reads)
    package = base.__module__.rpartition(".")[0]
    klass = saved_class(base, requested, manifest[what], package, manifest_path.parent)
    return klass(manifest["config"]), manifest


__all__ = ["LazyRegistry", "open_saved", "saved_class", "saved_header"]
