"""Serving: the model registry now; the HTTP API and web page build on it.

Import-light on purpose: FastAPI and the index libraries load only in the
modules that need them, so the registry works in training jobs and CLIs.
"""

from recgraph.data.snapshot import content_hash, data_snapshot
from recgraph.serving.registry import ModelRegistry, RegistryError, default_registry_root

__all__ = [
    "ModelRegistry",
    "RegistryError",
    "content_hash",
    "data_snapshot",
    "default_registry_root",
]
