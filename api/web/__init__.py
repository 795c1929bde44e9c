"""The web portal: server-rendered page shells (Jinja2) for customers, engineers and authors, plus one small script
that fills them from the JSON API (/api/v1) with the browser's ``kb_session`` cookie.

Every read and write a page makes goes through the JSON API, so the permission checks are the API's (and kb's)
and a page can never show what the API would refuse. The pages themselves only decide where to send a visitor:
to /login without a valid session, and away from the staff pages for customers. None of them is in the OpenAPI
document. ``install(app)`` adds the pages and /static to an app from ``api.main.create_app``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker

from api.deps import SESSION_COOKIE
from api.web.i18n import LANG_COOKIE, STRINGS, UI_LANGS, choose_lang
from kb.access import STAFF_ROLES, Principal
from kb.auth import principal_for_token, revoke_token
from kb.errors import AuthError
from kb.lifecycle import ARTICLE_EDITORS, Role

HERE: Final = Path(__file__).resolve().parent
STATIC_DIR: Final = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)

ARTICLE_ID: Final = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
HOME_BY_ROLE: Final[dict[Role, str]] = {
    Role.CUSTOMER: "/",
    Role.PARTNER: "/",
    Role.ENGINEER: "/console",
    Role.AUTHOR: "/author",
    Role.REVIEWER: "/author",
    Role.COACH: "/author",
    Role.ADMIN: "/console",
}


def current_principal(request: Request) -> Principal | None:
    """The caller of the ``kb_session`` cookie, or None (no cookie, or an expired / revoked / unknown one)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    factory: sessionmaker[Session] = request.app.state.read_factory
    with factory() as session:
        try:
            return principal_for_token(session, token)
        except AuthError:
            return None


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to go back to (never another site: ``//host`` and ``/\\host`` are refused)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def _render(
    request: Request,
    template: str,
    page: str,
    principal: Principal | None,
    *,
    data: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = choose_lang(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))
    role = principal.role if principal else None
    context = {
        "lang": lang,
        "t": STRINGS[lang],
        "page": page,
        "user": principal,
        "is_staff": role in STAFF_ROLES,
        "is_editor": role in ARTICLE_EDITORS,
        "home": HOME_BY_ROLE[role] if role else "/login",
        "data": {**(data or {}), "role": role, "lang": lang},
        "path": request.url.path,
    }
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _page(
    request: Request,
    template: str,
    page: str,
    *,
    roles: frozenset[Role] | None = None,
    data: dict[str, Any] | None = None,
) -> Response:
    """A page for a signed-in user (``roles``: only those); others go to /login, the wrong role gets a 403 page."""
    principal = current_principal(request)
    if principal is None:
        return _login_redirect(request)
    if roles is not None and principal.role not in roles:
        return _render(request, "message.html", "forbidden", principal, data={"key": "forbidden"}, status_code=403)
    return _render(request, template, page, principal, data=data)


def _not_found(request: Request) -> Response:
    principal = current_principal(request)
    if principal is None:
        return _login_redirect(request)
    return _render(request, "message.html", "not_found", principal, data={"key": "not_found"}, status_code=404)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> Response:
    return _render(request, "login.html", "login", None, data={"next": safe_next(next, "")})


@router.get("/logout")
def logout_page(request: Request) -> Response:
    """Revoke the session token and forget the cookie (the cookie is SameSite=Strict, so no other site can log a
    user out through this GET)."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        factory: sessionmaker[Session] = request.app.state.session_factory
        with factory.begin() as session:
            revoke_token(session, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang/{code}")
def switch_lang(code: str, next: str | None = None) -> Response:
    """Switch the interface language (a year-long ``lang`` cookie), then go back."""
    response = RedirectResponse(safe_next(next), status_code=303)
    if code in UI_LANGS:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="lax", path="/")
    return response


# --- customer portal (every signed-in user) -----------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def home_page(request: Request) -> Response:
    return _page(request, "search.html", "search")


@router.get("/articles/{article_id}", response_class=HTMLResponse)
def article_page(request: Request, article_id: str) -> Response:
    if not ARTICLE_ID.match(article_id):
        return _not_found(request)
    return _page(request, "article.html", "article", data={"article_id": article_id})


@router.get("/cases/new", response_class=HTMLResponse)
def new_case_page(request: Request, subject: str = "") -> Response:
    """The case form; ``subject`` prefills it (the assistant's "open a case" after an abstention)."""
    return _page(request, "case_new.html", "case_new", data={"subject": subject[:500]})


@router.get("/assistant", response_class=HTMLResponse)
def assistant_page(request: Request, q: str = "") -> Response:
    return _page(request, "assistant.html", "assistant", data={"q": q[:1000]})


@router.get("/cases", response_class=HTMLResponse)
def my_cases_page(request: Request) -> Response:
    return _page(request, "cases.html", "cases")


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, case_id: str) -> Response:
    if not case_id.isdigit() or not 0 < int(case_id) < 2**62:
        return _not_found(request)
    return _page(request, "case.html", "case", data={"case_id": int(case_id)})


# --- engineer console and authoring (staff) -----------------------------------------------------------------------


@router.get("/console", response_class=HTMLResponse)
def console_page(request: Request) -> Response:
    return _page(request, "console.html", "console", roles=STAFF_ROLES)


@router.get("/console/cases/{case_id}", response_class=HTMLResponse)
def console_case_page(request: Request, case_id: str) -> Response:
    if not case_id.isdigit() or not 0 < int(case_id) < 2**62:
        return _not_found(request)
    return _page(request, "console_case.html", "console_case", roles=STAFF_ROLES, data={"case_id": int(case_id)})


@router.get("/author", response_class=HTMLResponse)
def author_page(request: Request) -> Response:
    return _page(request, "author.html", "author", roles=STAFF_ROLES)


@router.get("/author/articles/{article_id}", response_class=HTMLResponse)
def editor_page(request: Request, article_id: str) -> Response:
    if not ARTICLE_ID.match(article_id):
        return _not_found(request)
    return _page(request, "editor.html", "editor", roles=STAFF_ROLES, data={"article_id": article_id})


def install(app: FastAPI) -> None:
    """Add the portal's pages (at the root, outside the OpenAPI document) and its /static files to ``app``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
