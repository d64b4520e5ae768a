"""A fake Bluesky AppView on 127.0.0.1, for tests and benchmarks of the crawler.

It is a real HTTP/1.1 server (the standard library's threading server, in a
thread or a subprocess, on an ephemeral port) that speaks XRPC with the
response shapes, error bodies and rate-limit headers of the reference
implementation (see ``shared/protocols/README.md``), over a deterministic
generated follow graph:

- ``app.bsky.graph.getFollows`` / ``getFollowers`` with ``limit`` (1-100,
  default 50) and an opaque ``cursor`` that is absent on the last page;
  lists are newest first; an unknown actor is ``400 InvalidRequest "Actor
  not found: <actor>"``; a bad cursor ``400 "Malformed cursor"``;
- ``app.bsky.actor.getProfile`` / ``getProfiles`` (unknown actors silently
  left out) and ``com.atproto.identity.resolveHandle``;
- an unknown NSID is ``501 MethodNotImplemented``; a POST to a query is
  ``400 "Incorrect HTTP method (POST) expected GET"``;
- a fixed-window rate limit (windows aligned to multiples of their length)
  with ``RateLimit-Limit/Remaining/Reset/Policy`` on every XRPC answer and a
  ``429 RateLimitExceeded`` plus ``Retry-After`` once the budget is spent.
  ``RateLimit-Reset`` is whole unix seconds whenever the window is a whole
  number of seconds; a window scaled below that gets fractional values
  (the only liberty taken, so that tests can run in milliseconds);
- faults on demand, drawn at random (:class:`FaultConfig`) or scripted
  (:meth:`FakeAppView.inject`): 429, 500, a non-JSON 502 page, 503, a timeout
  (the answer comes after the client gave up), short pages, a duplicate
  entry across two pages, and the two end-of-list bugs seen in production:
  a repeated cursor and an empty page that still carries a cursor.

Page faults never hide an edge: a crawler that pages correctly, retries and
deduplicates gets exactly :meth:`FakeGraph.crawl_edges`. The scripted fault
``repeat_cursor`` (a cursor that repeats mid-list) is the exception, kept for
testing that a crawler stops instead of looping.

Run it alone with ``python -m recgraph.collect.bluesky.fake_server --help``;
it prints ``{"url": ...}`` on its first line of stdout.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import math
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from recgraph.collect.fake_http import FakeServer, LocalHandler, LocalServer, write_response
from recgraph.settings import config_of

_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"

#: Faults that change the shape of a getFollows page rather than its status.
PAGE_FAULTS = frozenset({"short", "duplicate", "repeat_cursor", "repeat_end", "empty_end"})
#: Faults that replace the answer.
STATUS_FAULTS = frozenset({"429", "500", "502", "503", "timeout"})


def fake_did(seed: int, index: int) -> str:
    """A syntactically valid ``did:plc:`` + 24 base32 characters, stable per (seed, index)."""
    digest = hashlib.sha256(f"recgraph-fake:{seed}:{index}".encode()).digest()
    return "did:plc:" + "".join(_BASE32[b % 32] for b in digest[:24])


# ---------------------------------------------------------------------- graph
@dataclass
class FakeGraph:
    """Accounts and their follow lists, newest follow first.

    Attributes
    ----------
    dids, handles
        Per account index. A handle may be ``handle.invalid`` (broken DID link).
    follows
        Account index -> followed account indices, newest first.
    missing
        Accounts that are listed by others but answer "Actor not found"
        (taken down or deactivated after being followed).
    """

    dids: list[str]
    handles: list[str]
    follows: dict[int, list[int]]
    missing: set[int] = field(default_factory=set)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        self._by_did = {d: i for i, d in enumerate(self.dids)}
        self._by_handle = {h: i for i, h in enumerate(self.handles) if h != "handle.invalid"}

    @classmethod
    def generate(
        cls,
        n_accounts: int = 300,
        *,
        seed: int = 0,
        mean_follows: float = 20.0,
        max_follows: int = 450,
        missing_fraction: float = 0.02,
        invalid_handle_fraction: float = 0.01,
    ) -> FakeGraph:
        """A deterministic graph in which every account is reachable from account 0.

        Out-degrees are log-normal around ``mean_follows`` (so some lists
        span several pages), targets are drawn with a popularity skew, and
        every account ``i > 0`` is followed by some earlier, present account,
        which makes the whole graph reachable from account 0 (never missing).
        """
        if n_accounts < 2:
            raise ValueError("a fake graph needs at least two accounts")
        rng = random.Random(seed)
        dids = [fake_did(seed, i) for i in range(n_accounts)]
        handles = [
            "handle.invalid"
            if i and rng.random() < invalid_handle_fraction
            else f"user{i}.fake-{seed}.test"
            for i in range(n_accounts)
        ]
        missing = {i for i in range(1, n_accounts) if rng.random() < missing_fraction}
        present = [i for i in range(n_accounts) if i not in missing]
        popularity_order = list(range(n_accounts))
        rng.shuffle(popularity_order)
        weights = [0.0] * n_accounts
        for rank, account in enumerate(popularity_order):
            weights[account] = 1.0 / (rank + 1) ** 0.8
        cumulative = list(itertools.accumulate(weights))
        sigma = 1.0
        mu = math.log(max(1.0, mean_follows)) - sigma**2 / 2
        follows: dict[int, list[int]] = {}
        population = range(n_accounts)
        for i in present:
            degree = min(max_follows, n_accounts - 1, int(rng.lognormvariate(mu, sigma)))
            chosen: dict[int, None] = {}
            if degree:
                for target in rng.choices(population, cum_weights=cumulative, k=degree * 2):
                    if target != i:
                        chosen[target] = None
                    if len(chosen) >= degree:
                        break
            follows[i] = list(chosen)
        # Reachability: a present, earlier account follows each account.
        earlier_present = [0]
        for i in range(1, n_accounts):
            parent = earlier_present[rng.randrange(len(earlier_present))]
            if i not in follows[parent]:
                follows[parent].insert(rng.randrange(len(follows[parent]) + 1), i)
            if i not in missing:
                earlier_present.append(i)
        return cls(dids=dids, handles=handles, follows=follows, missing=missing)

    # ---------------------------------------------------------------- lookups
    def index(self, actor: str) -> int | None:
        """Account index of a DID or handle (case-insensitive handles), or None."""
        if actor.startswith("did:"):
            return self._by_did.get(actor)
        return self._by_handle.get(actor.lower().lstrip("@"))

    def follows_of(self, index: int) -> list[int]:
        with self._lock:
            return list(self.follows.get(index, []))

    def followers_of(self, index: int) -> list[int]:
        with self._lock:
            return [s for s, targets in self.follows.items() if index in targets]

    # ---------------------------------------------------------------- changes
    def follow(self, source: str, target: str) -> None:
        """``source`` follows ``target`` now (newest first)."""
        s, t = self._require(source), self._require(target)
        with self._lock:
            targets = self.follows.setdefault(s, [])
            if t not in targets:
                targets.insert(0, t)

    def unfollow(self, source: str, target: str) -> None:
        """``source`` stops following ``target``."""
        s, t = self._require(source), self._require(target)
        with self._lock:
            self.follows[s] = [x for x in self.follows.get(s, []) if x != t]

    def _require(self, actor: str) -> int:
        index = self.index(actor)
        if index is None:
            raise KeyError(f"no account {actor!r} in the fake graph")
        return index

    # ---------------------------------------------------------------- truth
    def crawl_depths(self, seeds: Iterable[str], max_depth: int | None = None) -> dict[int, int]:
        """Breadth-first depth of every account a crawl from ``seeds`` discovers."""
        depth: dict[int, int] = {}
        frontier = deque()
        for seed in seeds:
            index = self._require(seed)
            if index not in depth:
                depth[index] = 0
                frontier.append(index)
        with self._lock:
            while frontier:
                account = frontier.popleft()
                if account in self.missing:
                    continue
                if max_depth is not None and depth[account] > max_depth:
                    continue
                for target in self.follows.get(account, []):
                    if target not in depth:
                        depth[target] = depth[account] + 1
                        frontier.append(target)
        return depth

    def crawl_edges(
        self, seeds: Iterable[str] | None = None, max_depth: int | None = None
    ) -> set[tuple[str, str]]:
        """The ``(follower DID, followed DID)`` edges a complete crawl stores.

        Accounts within ``max_depth`` of the seeds (all accounts when
        ``seeds`` is None) are crawled; a missing account has no edges.
        """
        if seeds is None:
            crawled: Iterable[int] = range(len(self.dids))
        else:
            crawled = [
                a
                for a, d in self.crawl_depths(seeds, max_depth).items()
                if max_depth is None or d <= max_depth
            ]
        with self._lock:
            return {
                (self.dids[s], self.dids[t])
                for s in crawled
                if s not in self.missing
                for t in self.follows.get(s, [])
            }

    def n_edges(self) -> int:
        with self._lock:
            return sum(len(v) for k, v in self.follows.items() if k not in self.missing)

    # ---------------------------------------------------------------- views
    def profile_view(self, index: int, detailed: bool = False) -> dict[str, Any]:
        """A ``profileView`` (``profileViewDetailed`` with counts when ``detailed``)."""
        created = 1_680_000_000 + index * 3_600
        view: dict[str, Any] = {
            "did": self.dids[index],
            "handle": self.handles[index],
            "displayName": f"User {index}",
            "labels": [],
            "viewer": {"muted": False, "blockedBy": False},
            "createdAt": _rfc3339(created),
            "indexedAt": _rfc3339(created + 60),
        }
        if index % 3 == 0:
            view["description"] = f"fake account number {index}"
            view["avatar"] = (
                f"https://cdn.bsky.app/img/avatar/plain/{self.dids[index]}/bafkreifake@jpeg"
            )
        if detailed:
            view["followsCount"] = len(self.follows_of(index))
            view["followersCount"] = len(self.followers_of(index))
            view["postsCount"] = index % 50
        return view


def _rfc3339(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))


# ---------------------------------------------------------------------- config
class FaultConfig(BaseModel):
    """Probabilities of each fault per request (getFollows for page faults), and their knobs."""

    model_config = ConfigDict(extra="forbid")

    p_429: float = Field(default=0.0, ge=0, le=1)
    p_500: float = Field(default=0.0, ge=0, le=1)
    p_502: float = Field(default=0.0, ge=0, le=1)
    p_503: float = Field(default=0.0, ge=0, le=1)
    p_timeout: float = Field(default=0.0, ge=0, le=1)
    p_short: float = Field(default=0.0, ge=0, le=1)
    p_duplicate: float = Field(default=0.0, ge=0, le=1)
    p_repeat_end: float = Field(default=0.0, ge=0, le=1)
    p_empty_end: float = Field(default=0.0, ge=0, le=1)
    #: How long a "timeout" answer is held back (longer than the client waits).
    timeout_seconds: float = Field(default=2.0, gt=0)
    #: ``Retry-After`` of an injected 429 (not of a spent budget).
    injected_retry_after_seconds: float = Field(default=1.0, ge=0)
    seed: int = 0


class RateLimitPolicy(BaseModel):
    """The server's budget: ``limit`` points per fixed ``window_seconds``; one point per request."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    limit: int = Field(default=3000, ge=1)
    window_seconds: float = Field(default=300.0, gt=0)
    #: Newer servers send ``Retry-After`` on a 429.
    retry_after: bool = True


# ---------------------------------------------------------------------- server
class _Server(LocalServer):
    app: FakeAppView


class _Handler(LocalHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.server.app._handle(self, "GET")

    def do_POST(self) -> None:  # noqa: N802
        self.body()  # read, so the connection can serve the next request; not used
        self.server.app._handle(self, "POST")


class FakeAppView(FakeServer):
    """The fake AppView; ``with FakeAppView(graph) as server:`` serves on ``server.url``.

    Parameters
    ----------
    graph
        The follow graph to serve (default: ``FakeGraph.generate()``).
    rate_limit, faults
        :class:`RateLimitPolicy` and :class:`FaultConfig`, or their fields.
    host, port
        Where to listen; port 0 picks a free one.
    """

    def __init__(
        self,
        graph: FakeGraph | None = None,
        *,
        rate_limit: RateLimitPolicy | dict | None = None,
        faults: FaultConfig | dict | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.graph = graph or FakeGraph.generate()
        self.rate_limit = (
            rate_limit
            if isinstance(rate_limit, RateLimitPolicy)
            else RateLimitPolicy.model_validate(rate_limit or {"enabled": False})
        )
        self.faults = config_of(FaultConfig, faults)
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._script: deque[str] = deque()
        self._window_index: int | None = None
        self._window_count = 0
        #: ``(arrival unix seconds, nsid, status)`` of every XRPC request.
        self.log: list[tuple[float, str, int]] = []
        self.statuses: Counter = Counter()
        self.faults_served: Counter = Counter()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.app = self

    # ---------------------------------------------------------------- lifecycle
    def serve_forever(self) -> None:
        """Serve in this thread (the command line's ``main``); ``start`` serves in another."""
        self._httpd.serve_forever(poll_interval=0.1)

    # ---------------------------------------------------------------- control
    def inject(self, *faults: str) -> None:
        """Serve these faults, in order, to the next requests (page faults: next getFollows)."""
        for fault in faults:
            if fault not in PAGE_FAULTS | STATUS_FAULTS:
                known = ", ".join(sorted(PAGE_FAULTS | STATUS_FAULTS))
                raise ValueError(f"unknown fault {fault!r}; known: {known}")
        with self._lock:
            self._script.extend(faults)

    def stats(self) -> dict[str, Any]:
        """Counts and the request log, as JSON-ready data (also at ``GET /_fake/stats``)."""
        with self._lock:
            return {
                "requests": len(self.log),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "faults": dict(self.faults_served),
                "log": [[t, status] for t, _, status in self.log],
            }

    # ---------------------------------------------------------------- requests
    def _handle(self, request: _Handler, method: str) -> None:
        parts = urlsplit(request.path)
        if parts.path == "/_fake/stats":
            self._send(request, 200, self.stats(), {})
            return
        if not parts.path.startswith("/xrpc/"):
            self._send_text(request, 404, "Not Found")
            return
        nsid = parts.path[len("/xrpc/") :]
        params = parse_qs(parts.query, keep_blank_values=True)
        now = time.time()
        headers, over_budget, retry_after = self._count(now)
        with self._lock:
            fault = self._draw_fault(nsid)
        if over_budget:
            if self.rate_limit.retry_after:
                headers["Retry-After"] = retry_after
            self._finish(
                request, nsid, now, 429, _error("RateLimitExceeded", "Rate Limit Exceeded"), headers
            )
            return
        if fault == "timeout":
            time.sleep(self.faults.timeout_seconds)
            fault = None
        if fault == "429":
            headers["Retry-After"] = _format_seconds(self.faults.injected_retry_after_seconds)
            self._finish(
                request, nsid, now, 429, _error("RateLimitExceeded", "Rate Limit Exceeded"), headers
            )
            return
        if fault == "500":
            self._finish(
                request,
                nsid,
                now,
                500,
                _error("InternalServerError", "Internal Server Error"),
                headers,
            )
            return
        if fault == "502":
            page = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
            self._finish_text(request, nsid, now, 502, page, headers)
            return
        if fault == "503":
            self._finish(
                request,
                nsid,
                now,
                503,
                _error("NotEnoughResources", "Not enough resources"),
                headers,
            )
            return
        if method != "GET":
            body = _error("InvalidRequest", f"Incorrect HTTP method ({method}) expected GET")
            self._finish(request, nsid, now, 400, body, headers)
            return
        route = _ROUTES.get(nsid)
        if route is None:
            self._finish(
                request,
                nsid,
                now,
                501,
                _error("MethodNotImplemented", "Method Not Implemented"),
                headers,
            )
            return
        status, body = route(self, params, fault)
        self._finish(request, nsid, now, status, body, headers)

    def _count(self, now: float) -> tuple[dict[str, str], bool, str]:
        """Take one point from the window; the headers, whether it was over budget, Retry-After."""
        policy = self.rate_limit
        if not policy.enabled:
            return {}, False, ""
        window = policy.window_seconds
        with self._lock:
            index = math.floor(now / window)
            if index != self._window_index:
                self._window_index, self._window_count = index, 0
            self._window_count += 1
            count = self._window_count
        reset = (index + 1) * window
        headers = {
            "RateLimit-Limit": str(policy.limit),
            "RateLimit-Remaining": str(max(0, policy.limit - count)),
            "RateLimit-Reset": _format_seconds(reset),
            "RateLimit-Policy": f"{policy.limit};w={_format_seconds(window)}",
        }
        wait = reset - now
        retry_after = str(math.ceil(wait)) if float(window).is_integer() else f"{wait:.3f}"
        return headers, count > policy.limit, retry_after

    def _draw_fault(self, nsid: str) -> str | None:
        """The fault this request gets: the script first, then the dice. Caller holds the lock."""
        is_follows = nsid in ("app.bsky.graph.getFollows", "app.bsky.graph.getFollowers")
        if self._script:
            head = self._script[0]
            if head in STATUS_FAULTS or is_follows:
                self._script.popleft()
                self.faults_served[head] += 1
                return head
        f = self.faults
        draw = self._rng.random()
        for name, p in (
            ("429", f.p_429),
            ("500", f.p_500),
            ("502", f.p_502),
            ("503", f.p_503),
            ("timeout", f.p_timeout),
        ):
            if draw < p:
                self.faults_served[name] += 1
                return name
            draw -= p
        if is_follows:
            draw = self._rng.random()
            for name, p in (("short", f.p_short), ("duplicate", f.p_duplicate)):
                if draw < p:
                    self.faults_served[name] += 1
                    return name
                draw -= p
        return None

    def _end_fault(self) -> str | None:
        """Whether this list end shows one of the end-of-list bugs (random faults only)."""
        f = self.faults
        with self._lock:
            draw = self._rng.random()
        if draw < f.p_repeat_end:
            return "repeat_end"
        if draw < f.p_repeat_end + f.p_empty_end:
            return "empty_end"
        return None

    # ---------------------------------------------------------------- replies
    def _finish(self, request, nsid, now, status, body, headers) -> None:
        self._record(nsid, now, status)
        self._send(request, status, body, headers)

    def _finish_text(self, request, nsid, now, status, text, headers) -> None:
        self._record(nsid, now, status)
        self._send_text(request, status, text, headers)

    def _record(self, nsid: str, now: float, status: int) -> None:
        with self._lock:
            self.log.append((now, nsid, status))
            self.statuses[status] += 1

    @staticmethod
    def _send(request: _Handler, status: int, body: Any, headers: dict[str, str]) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        write_response(request, status, payload, "application/json; charset=utf-8", headers)

    @staticmethod
    def _send_text(
        request: _Handler, status: int, text: str, headers: dict[str, str] | None = None
    ) -> None:
        write_response(request, status, text.encode(), "text/html", headers)


def _error(name: str, message: str) -> dict[str, str]:
    return {"error": name, "message": message}


def _format_seconds(value: float) -> str:
    """Whole seconds as an integer (what real servers send), else three decimals."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


# ---------------------------------------------------------------------- routes
def _param(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _limit(params: dict[str, list[str]]) -> tuple[int | None, dict | None]:
    raw = _param(params, "limit")
    if raw is None:
        return 50, None
    try:
        value = int(raw)
    except ValueError:
        return None, _error("InvalidRequest", "limit must be an integer")
    if value > 100:
        return None, _error("InvalidRequest", "limit can not be greater than 100")
    if value < 1:
        return None, _error("InvalidRequest", "limit can not be less than 1")
    return value, None


def _encode_cursor(account: int, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{offset}:{account}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, account: int) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        offset, owner = (int(x) for x in text.split(":"))
    except (ValueError, UnicodeDecodeError):
        return None
    return offset if owner == account and offset >= 0 else None


def _list_route(kind: str):
    key = "follows" if kind == "follows" else "followers"

    def route(app: FakeAppView, params: dict[str, list[str]], fault: str | None):
        actor = _param(params, "actor")
        if not actor:
            return 400, _error("InvalidRequest", 'Params must have the property "actor"')
        limit, problem = _limit(params)
        if problem is not None:
            return 400, problem
        assert limit is not None
        graph = app.graph
        index = graph.index(actor)
        if index is None or index in graph.missing:
            return 400, _error("InvalidRequest", f"Actor not found: {actor}")
        entries = graph.follows_of(index) if kind == "follows" else graph.followers_of(index)
        cursor = _param(params, "cursor")
        offset = 0
        if cursor is not None:
            decoded = _decode_cursor(cursor, index)
            if decoded is None:
                return 400, _error("InvalidRequest", "Malformed cursor")
            offset = decoded
        size = limit
        if fault == "short" and limit > 1:
            with app._lock:
                size = app._rng.randint(1, limit - 1)
        page = entries[offset : offset + size]
        next_offset = offset + len(page)
        if fault == "duplicate" and len(page) > 1 and next_offset < len(entries):
            next_offset -= 1  # the next page starts with this page's last entry again
        body: dict[str, Any] = {
            "subject": graph.profile_view(index),
            key: [graph.profile_view(i) for i in page],
        }
        if fault == "repeat_cursor" and cursor is not None:
            body["cursor"] = cursor
        elif next_offset < len(entries):
            body["cursor"] = _encode_cursor(index, next_offset)
        else:
            end = fault if fault in ("repeat_end", "empty_end") else app._end_fault()
            if end == "repeat_end":
                body["cursor"] = (
                    cursor if cursor is not None else _encode_cursor(index, len(entries))
                )
            elif end == "empty_end":
                body["cursor"] = _encode_cursor(index, len(entries))
        return 200, body

    return route


def _get_profile(app: FakeAppView, params: dict[str, list[str]], fault: str | None):
    actor = _param(params, "actor")
    if not actor:
        return 400, _error("InvalidRequest", 'Params must have the property "actor"')
    index = app.graph.index(actor)
    if index is None:
        return 400, _error("InvalidRequest", "Profile not found")
    if index in app.graph.missing:
        return 400, _error("AccountDeactivated", "Account is deactivated")
    return 200, app.graph.profile_view(index, detailed=True)


def _get_profiles(app: FakeAppView, params: dict[str, list[str]], fault: str | None):
    actors = params.get("actors") or []
    if not actors:
        return 400, _error("InvalidRequest", 'Params must have the property "actors"')
    if len(actors) > 25:
        return 400, _error("InvalidRequest", "actors must not have more than 25 elements")
    found = []
    for actor in actors:
        index = app.graph.index(actor)
        if index is not None and index not in app.graph.missing:
            found.append(app.graph.profile_view(index, detailed=True))
    return 200, {"profiles": found}


def _resolve_handle(app: FakeAppView, params: dict[str, list[str]], fault: str | None):
    handle = _param(params, "handle")
    if not handle:
        return 400, _error("InvalidRequest", 'Params must have the property "handle"')
    index = app.graph.index(handle.lower()) if not handle.startswith("did:") else None
    if index is None:
        return 400, _error("InvalidRequest", "Unable to resolve handle")
    return 200, {"did": app.graph.dids[index]}


_ROUTES = {
    "app.bsky.graph.getFollows": _list_route("follows"),
    "app.bsky.graph.getFollowers": _list_route("followers"),
    "app.bsky.actor.getProfile": _get_profile,
    "app.bsky.actor.getProfiles": _get_profiles,
    "com.atproto.identity.resolveHandle": _resolve_handle,
}


# ---------------------------------------------------------------------- subprocess
def server_arguments(
    *,
    accounts: int,
    seed: int = 0,
    mean_follows: float = 20.0,
    rate_limit: RateLimitPolicy | None = None,
    faults: FaultConfig | None = None,
) -> list[str]:
    """Command-line arguments of :func:`main` for these settings."""
    args = ["--accounts", str(accounts), "--seed", str(seed), "--mean-follows", str(mean_follows)]
    if rate_limit is not None:
        args += ["--rate-limit", rate_limit.model_dump_json()]
    if faults is not None:
        args += ["--faults", faults.model_dump_json()]
    return args


def start_subprocess(**settings: Any) -> tuple[subprocess.Popen, str]:
    """Run the fake server in its own process (its own core); return it and its URL.

    ``settings`` are the keywords of :func:`server_arguments`. Stop it with
    ``process.terminate()``.
    """
    command = [sys.executable, "-m", "recgraph.collect.bluesky.fake_server"]
    command += server_arguments(**settings)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise RuntimeError("the fake AppView did not start")
    return process, json.loads(line)["url"]


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a fake AppView until SIGTERM; print ``{"url": ...}`` first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mean-follows", type=float, default=20.0)
    parser.add_argument("--rate-limit", default=None, help="RateLimitPolicy as JSON")
    parser.add_argument("--faults", default=None, help="FaultConfig as JSON")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    graph = FakeGraph.generate(args.accounts, seed=args.seed, mean_follows=args.mean_follows)
    server = FakeAppView(
        graph,
        rate_limit=RateLimitPolicy.model_validate_json(args.rate_limit)
        if args.rate_limit
        else None,
        faults=FaultConfig.model_validate_json(args.faults) if args.faults else None,
        port=args.port,
    )
    signal.signal(
        signal.SIGTERM, lambda *_: threading.Thread(target=server._httpd.shutdown).start()
    )
    print(json.dumps({"url": server.url}), flush=True)
    server.serve_forever()


__all__ = [
    "FakeAppView",
    "FakeGraph",
    "FaultConfig",
    "RateLimitPolicy",
    "fake_did",
    "main",
    "server_arguments",
    "start_subprocess",
]

if __name__ == "__main__":
    main()
