"""What stands between a request and a handler: the token, the body's size and JSON, and errors.

- :class:`ServiceRoute` reads a body itself, at most ``max_body_bytes`` while
  it streams in (413 past that, or at once when ``Content-Length`` says so),
  and parses it as strict JSON: ``NaN``, ``Infinity`` and numbers that
  overflow (``1e999``) are refused with 422, as is text that is not JSON.
- :class:`GuardedRoute` checks the bearer token before anything else, so an
  unauthenticated request is answered 401 without its body being read.
- :class:`AnswerRoute` hands a request whose parameters plainly pass their
  checks straight to its endpoint (the answers, asked hundreds of times a second),
  a plain ``def`` one on the app's ``answer_executor`` where it has one (on the
  event loop itself when that is :data:`ON_THE_LOOP`).
- :func:`install_error_handlers` maps recgraph's errors to answers: 422 with
  the field at fault (always encodable as JSON), 404 for unknown ids, 503 with
  ``Retry-After`` for a busy or unreachable store or before a model is loaded.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import enum
import functools
import inspect
import json
import logging
import math
import secrets
import types
import typing
from collections.abc import Callable, Coroutine
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from recgraph.data.sql import StoreBusyError, first_line, is_lock_timeout
from recgraph.errors import InputError, NotFittedError
from recgraph.serving.feedback import UnknownIdError
from recgraph.serving.loader import NoModelError

log = logging.getLogger("recgraph.serving")
#: Documents the bearer scheme in OpenAPI; the check itself is :func:`check_token`.
bearer = HTTPBearer(auto_error=False, description="The service's API token.")
#: Seconds a client is asked to wait after a 503.
RETRY_AFTER_NO_MODEL = 5


class AnswerPlace(enum.Enum):
    """Where an app's plain ``def`` answers run when not on an executor (a sentinel that
    ``is`` compares safely: an enum member is one object)."""

    ON_THE_LOOP = "on the event loop"


#: An app's ``answer_executor`` when its plain ``def`` answers run on the event loop itself.
ON_THE_LOOP = AnswerPlace.ON_THE_LOOP


class _NotJSON(ValueError):
    """A body that strict JSON refuses."""


# ---------------------------------------------------------------------- token
def check_token(request: Request) -> None:
    """Raise 401/403 unless the request carries the service's bearer token (header only)."""
    token = request.app.state.settings.token()
    if token is None:
        raise HTTPException(
            status_code=403,
            detail="writes are disabled: start the service with --token or RECGRAPH_API_TOKEN",
        )
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise HTTPException(
            status_code=401,
            detail="this endpoint needs 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets.compare_digest(credentials.strip().encode(), token.encode()):
        raise HTTPException(status_code=403, detail="wrong token")


# ---------------------------------------------------------------------- body
async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status_code=413, detail=f"the body is larger than {limit:,} bytes (max_body_bytes)"
    )


def _refuse_constant(name: str) -> Any:
    raise _NotJSON(f"{name} is not valid JSON: numbers must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJSON(f"{text[:40]} is too large for a JSON number (numbers must be finite)")
    return value


def parse_json(body: bytes) -> Any:
    """``body`` as strict JSON: UTF-8, finite numbers only; 422 (``json_invalid``) otherwise."""
    try:
        text = body.decode("utf-8")
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except UnicodeDecodeError as exc:
        error, where = f"not UTF-8 text ({exc.reason} at byte {exc.start})", exc.start
    except json.JSONDecodeError as exc:
        error, where = exc.msg, exc.pos
    except ValueError as exc:  # _NotJSON, or an integer too long to read
        error, where = str(exc), 0
    raise RequestValidationError(
        [
            {
                "type": "json_invalid",
                "loc": ("body", where),
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": error},
            }
        ]
    )


class ServiceRoute(APIRoute):
    """A route whose body is read within the size limit and parsed as strict JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        has_body = self.body_field is not None

        async def guarded(request: Request) -> Response:
            self.before_body(request)
            if has_body:
                body = await read_body(request, request.app.state.settings.max_body_bytes)
                # FastAPI reads these back instead of the (consumed) stream
                request._body = body
                if body:
                    request._json = parse_json(body)
            return await handler(request)

        return guarded

    def before_body(self, request: Request) -> None:
        """Checks that must pass before a byte of the body is read (none here)."""


class GuardedRoute(ServiceRoute):
    """A :class:`ServiceRoute` that needs the bearer token, checked before the body is read."""

    def before_body(self, request: Request) -> None:
        check_token(request)


class AnswerRoute(ServiceRoute):
    """A GET route of path and query parameters only, whose clean requests skip FastAPI's
    per-request parameter solving.

    FastAPI's generic solver (dependencies, headers, cookies, a sub-response,
    background tasks, annotations re-inspected on every request) was the
    largest part of the app's own CPU per answer: measured side by side on the
    ranked load cases, the app around the handler went from 0.61-0.68 to
    0.32-0.45 ms a request with this route (benchmarks/serving_overhead.py). Here each path and query value is read as FastAPI reads it
    (a path parameter from the route's match, a query parameter's last value)
    and checked by the parameter's own pydantic validator; when every one
    passes, the endpoint is called with them; a plain ``def`` one on the app's
    ``answer_executor`` (its own threads, or the event loop itself when that is
    :data:`ON_THE_LOOP`; FastAPI's shared thread pool only when the app has
    none), where FastAPI would always use its shared pool. A value that is missing where it
    is required, or that its validator refuses, sends the whole request the
    standard way, so every 422 is FastAPI's own, to the byte. The endpoint
    must return a :class:`Response` (the answers build their JSON themselves).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        standard = super().get_route_handler()
        fields = plain_parameters(self.dependant)
        if fields is None:
            return standard
        path_fields, query_fields = fields
        call = self.dependant.call
        is_async = inspect.iscoroutinefunction(call)

        async def answer(request: Request) -> Response:
            values = plain_values(request, path_fields, query_fields)
            if values is None:
                return await standard(request)
            if is_async:
                response = await call(**values)
            else:
                executor = getattr(request.app.state, "answer_executor", None)
                if executor is ON_THE_LOOP:
                    response = call(**values)
                elif executor is None:
                    response = await run_in_threadpool(call, **values)
                else:
                    run = functools.partial(contextvars.copy_context().run, call, **values)
                    response = await asyncio.get_running_loop().run_in_executor(executor, run)
                if inspect.isawaitable(response):  # a callable object or wrapper of an async one
                    response = await response
            if not isinstance(response, Response):
                raise TypeError(f"{self.path}: an AnswerRoute endpoint must return a Response")
            return response

        return answer


def plain_parameters(dependant: Any) -> tuple[list[Any], list[Any]] | None:
    """The path and query fields of ``dependant`` if that is all it takes, each a plain
    scalar under its own name; ``None`` when anything else is asked (FastAPI's way then)."""
    if (
        dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.dependencies
    ):
        return None
    special = (
        "request_param_name",
        "websocket_param_name",
        "http_connection_param_name",
        "response_param_name",
        "background_tasks_param_name",
        "security_scopes_param_name",
    )
    if any(getattr(dependant, name, None) for name in special):
        return None
    for field in (*dependant.path_params, *dependant.query_params):
        info = field.field_info
        if (
            field.alias != field.name
            or info.validation_alias is not None
            or field_is_sequence(info.annotation)
            or any(type(item).__name__ == "Json" for item in info.metadata)
            or not _plain_scalar(info.annotation)
        ):
            return None
    return list(dependant.path_params), list(dependant.query_params)


def _plain_scalar(annotation: Any) -> bool:
    """``str``, ``int``, ``float`` or ``bool``, or one of them or ``None``: the values read
    here as FastAPI reads them (a model, even optional, FastAPI reads from its fields)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    return annotation in (str, int, float, bool)


def field_is_sequence(annotation: Any) -> bool:
    """Whether FastAPI reads the parameter as a list (every value of a repeated key)."""
    from fastapi.dependencies.utils import field_annotation_is_sequence

    return field_annotation_is_sequence(annotation)


def plain_values(
    request: Request, path_fields: list[Any], query_fields: list[Any]
) -> dict[str, Any] | None:
    """The endpoint's arguments read and validated as FastAPI would, or ``None`` when one is
    missing where required or refused (the request then goes FastAPI's way, for its 422)."""
    values: dict[str, Any] = {}
    path_params = request.path_params
    for field in path_fields:
        raw = path_params.get(field.alias)
        if raw is None:
            return None
        value, errors = field.validate(raw, values, loc=("path", field.alias))
        if errors:
            return None
        values[field.name] = value
    if query_fields:
        query = request.query_params
        for field in query_fields:
            raw = query.get(field.alias)
            if raw is None:
                info = field.field_info
                if info.is_required() or info.validate_default:
                    return None
                values[field.name] = copy.deepcopy(field.default)
                continue
            value, errors = field.validate(raw, values, loc=("query", field.alias))
            if errors:
                return None
            values[field.name] = value
    return values


# ---------------------------------------------------------------------- errors
def json_safe(value: Any) -> Any:
    """``value`` with what JSON cannot hold made printable: NaN and infinities become text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def install_error_handlers(app: FastAPI) -> None:
    """Register the answers to recgraph's errors on ``app``."""

    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # the offending input is echoed back; NaN or inf there would make the answer unencodable
        detail = json_safe(jsonable_encoder(exc.errors()))
        return JSONResponse({"detail": detail}, status_code=422)

    async def no_model(request: Request, exc: NoModelError) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc)},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_NO_MODEL)},
        )

    async def not_served(request: Request, exc: NotFittedError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    async def unknown_id(request: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    async def bad_input(request: Request, exc: InputError) -> JSONResponse:
        loc = ["body", exc.field] if exc.field else ["body"]
        return JSONResponse(
            {"detail": [{"loc": loc, "msg": exc.message, "type": "value_error"}]}, status_code=422
        )

    def retry_later(request: Request, detail: str, reason: str) -> JSONResponse:
        wait = max(1, math.ceil(request.app.state.settings.busy_timeout))
        log.warning("%s %s: store error: %s", request.method, request.url.path, reason)
        return JSONResponse(
            {"detail": f"{detail}; retry in {wait}s"},
            status_code=503,
            headers={"Retry-After": str(wait)},
        )

    async def store_busy(request: Request, exc: StoreBusyError) -> JSONResponse:
        timeout = request.app.state.settings.busy_timeout
        return retry_later(
            request,
            f"the store is busy: another writer held its lock for more than {timeout:g}s "
            "(busy_timeout); nothing was written",
            str(exc),
        )

    async def store_unavailable(request: Request, exc: sa.exc.OperationalError) -> JSONResponse:
        reason = first_line(getattr(exc, "orig", None) or exc)
        if is_lock_timeout(exc):
            return await store_busy(request, StoreBusyError(reason))
        return retry_later(request, "the store is unreachable", reason)

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(NoModelError, no_model)
    app.add_exception_handler(NotFittedError, not_served)
    app.add_exception_handler(UnknownIdError, unknown_id)
    app.add_exception_handler(InputError, bad_input)
    app.add_exception_handler(StoreBusyError, store_busy)
    app.add_exception_handler(sa.exc.OperationalError, store_unavailable)
