"""Handles and DIDs: validate, normalise, and resolve one into the other.

The crawler keys accounts by DID (handles change; DIDs do not) and keeps the
latest handle beside it. Seeds and API queries may name an account either
way, so this module turns an at-identifier into a DID
(``com.atproto.identity.resolveHandle``) and DIDs into profiles and handles
(``app.bsky.actor.getProfiles``, 25 actors per call, unknown ones silently
left out). The syntax rules are the atproto specs' (see
``shared/protocols/README.md`` section 4).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from recgraph.collect.bluesky.client import ClientConfig, HandleNotFound, XrpcClient
from recgraph.errors import InputError
from recgraph.settings import config_of

#: ``did:plc:`` + 24 base32 characters, ``did:web:`` + hostname, or any DID method.
DID_PATTERN = re.compile(r"^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$")
HANDLE_PATTERN = re.compile(
    r"^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$"
)
#: What the AppView shows for a handle whose DID link is broken.
INVALID_HANDLE = "handle.invalid"
_DISALLOWED_TLDS = (".local", ".arpa", ".invalid", ".onion", ".example", ".internal", ".alt")


def is_did(text: str) -> bool:
    """Whether ``text`` is a syntactically valid DID."""
    return len(text) <= 2048 and bool(DID_PATTERN.match(text))


def is_handle(text: str) -> bool:
    """Whether ``text`` is a syntactically valid handle (any case)."""
    return len(text) <= 253 and bool(HANDLE_PATTERN.match(text))


def normalize_actor(text: str, *, field: str = "actor") -> str:
    """A DID as given, or a handle lowercased without a leading ``@``.

    Raises
    ------
    InputError
        Neither a DID nor a handle, or a handle under a disallowed TLD
        (``.local``, ``.onion``, ...); the error names ``field``.
    """
    value = str(text).strip()
    if value.startswith("at://"):
        value = value[len("at://") :].split("/")[0]
    value = value.removeprefix("@")
    if value.startswith("did:"):
        if not is_did(value):
            raise InputError(f"{text!r} is not a valid DID", field=field)
        return value
    if not is_handle(value):
        raise InputError(f"{text!r} is neither a handle nor a DID", field=field)
    value = value.lower()
    if value.endswith(_DISALLOWED_TLDS) and value != INVALID_HANDLE:
        raise InputError(f"{text!r} uses a top-level domain handles may not use", field=field)
    return value


def clean_handle(handle: Any) -> str | None:
    """A handle worth storing: lowercased, or None for ``handle.invalid`` and junk."""
    if not isinstance(handle, str):
        return None
    handle = handle.strip().lower()
    return handle if handle and handle != INVALID_HANDLE and is_handle(handle) else None


async def resolve_actors(
    client: XrpcClient, actors: Iterable[str], *, field: str = "actor"
) -> dict[str, str]:
    """Map each actor (handle or DID, as given) to its DID.

    DIDs pass through after a syntax check; handles are resolved with
    ``resolveHandle`` concurrently.

    Raises
    ------
    InputError
        An actor is malformed or its handle does not resolve (names ``field``).
    """
    given = list(dict.fromkeys(actors))
    normalized = {actor: normalize_actor(actor, field=field) for actor in given}
    handles = sorted({n for n in normalized.values() if not n.startswith("did:")})

    async def resolve(handle: str) -> tuple[str, str]:
        try:
            return handle, await client.resolve_handle(handle)
        except HandleNotFound:
            raise InputError(
                f"the handle {handle!r} does not resolve to a DID", field=field
            ) from None

    resolved = dict(await asyncio.gather(*(resolve(h) for h in handles)))
    return {
        actor: value if value.startswith("did:") else resolved[value]
        for actor, value in normalized.items()
    }


async def fetch_profiles(client: XrpcClient, actors: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Profiles by DID for ``actors`` (handles or DIDs); unknown actors are absent."""
    profiles = await client.get_profiles([normalize_actor(a) for a in actors])
    return {p["did"]: p for p in profiles if isinstance(p, dict) and "did" in p}


class IdentityResolver:
    """Synchronous handle <-> DID look-ups for the API and the web page.

    Each call opens a short-lived client; results are cached in memory.

    Parameters
    ----------
    client
        A :class:`~recgraph.collect.bluesky.client.ClientConfig` or its fields
        (``base_url`` defaults to the public AppView).
    """

    def __init__(self, client: ClientConfig | Mapping[str, Any] | None = None) -> None:
        self.client_config = config_of(ClientConfig, client)
        self._dids: dict[str, str] = {}
        self._handles: dict[str, str | None] = {}

    def to_dids(self, actors: Iterable[str]) -> dict[str, str]:
        """Actor as given -> DID (see :func:`resolve_actors`)."""
        actors = list(actors)
        missing = [a for a in actors if a not in self._dids]
        if missing:
            self._dids.update(asyncio.run(self._resolve(missing)))
        return {a: self._dids[a] for a in actors}

    def to_handles(self, dids: Iterable[str]) -> dict[str, str | None]:
        """DID -> current handle (None when unknown, deactivated or ``handle.invalid``)."""
        dids = list(dids)
        missing = [d for d in dids if d not in self._handles]
        if missing:
            profiles = asyncio.run(self._profiles(missing))
            for did in missing:
                self._handles[did] = clean_handle(profiles.get(did, {}).get("handle"))
        return {d: self._handles[d] for d in dids}

    async def _resolve(self, actors: list[str]) -> dict[str, str]:
        async with XrpcClient(self.client_config) as client:
            return await resolve_actors(client, actors)

    async def _profiles(self, dids: list[str]) -> dict[str, dict[str, Any]]:
        async with XrpcClient(self.client_config) as client:
            return await fetch_profiles(client, dids)


__all__ = [
    "DID_PATTERN",
    "HANDLE_PATTERN",
    "INVALID_HANDLE",
    "IdentityResolver",
    "clean_handle",
    "fetch_profiles",
    "is_did",
    "is_handle",
    "normalize_actor",
    "resolve_actors",
]
