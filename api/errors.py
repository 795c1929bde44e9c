"""One table from domain errors to HTTP answers. Routes raise; they never catch to build responses."""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from kb.errors import (
    AuthError,
    ConcurrentUpdate,
    DuplicateDocument,
    IndexNotReady,
    InvalidInput,
    InvalidTransition,
    KBError,
    NotFound,
    PermissionDenied,
    QueryError,
)

STATUS: Final[tuple[tuple[type[KBError], int], ...]] = (
    (AuthError, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (InvalidTransition, 409),
    (ConcurrentUpdate, 409),
    (DuplicateDocument, 409),
    (QueryError, 422),
    (InvalidInput, 422),
    (IndexNotReady, 503),
)


def status_of(exc: KBError) -> int:
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 400)


def error_body(error: str, detail: str) -> dict[str, str]:
    return {"error": error, "detail": detail}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(KBError)
    async def _kb_error(request: Request, exc: KBError) -> JSONResponse:
        code = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
        return JSONResponse(error_body(type(exc).__name__, str(exc)), status_code=code, headers=headers)

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError) -> JSONResponse:
        # Domain checks on request values (an unknown state name, a too-short password) are the caller's mistake.
        return JSONResponse(error_body("InvalidValue", str(exc)), status_code=422)
