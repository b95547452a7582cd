"""What every Panel endpoint shares: rendering, who is signed in, forms and their CSRF check.

Forms are read here (URL-encoded, size-capped) rather than with Starlette's form parser,
which needs python-multipart for even the simplest form; the Panel posts no files through
forms (uploads go to the API from JavaScript).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from manager.db.models import Space
from manager.panel.session import (
    CSRF_FIELD,
    PRESESSION_COOKIE,
    PRESESSION_TTL_S,
    SESSION_COOKIE,
    PanelSessions,
)
from manager.principal import Principal
from manager.services.context import Services
from manager.services.errors import ServiceError, TooLarge
from manager.services.space_view import iso
from manager.services.spaces import space_for

BASE = "/panel"
MAX_FORM = 16 * 1024
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def when(stamp: str | None) -> str:
    """`2025-05-01 12:00:03 UTC` from the API's ISO time; a dash for never."""
    if not stamp:
        return "—"
    return stamp.replace("T", " ").split(".")[0].rstrip("Z") + " UTC"


def when_ms(ms: int | None) -> str:
    return when(iso(ms))


TEMPLATES.env.filters["when"] = when
TEMPLATES.env.filters["when_ms"] = when_ms


class SignInNeeded(Exception):
    """No valid session: pages redirect to the sign-in form, fragments answer 401."""


class CsrfRefused(ServiceError):
    status = 403

    def __init__(self) -> None:
        super().__init__(
            "This form was refused: it did not carry this session's security token. "
            "Go back, reload the page and try again."
        )


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def panel_sessions(request: Request) -> PanelSessions:
    sessions: PanelSessions = request.app.state.panel
    return sessions


async def signed_in(request: Request) -> Principal:
    """The signed-in user; the token's row is checked on every request (revoked: out)."""
    who = await panel_sessions(request).principal(request.cookies.get(SESSION_COOKIE))
    if who is None:
        raise SignInNeeded()
    return who


async def signed_in_space(request: Request) -> Space:
    """The Space in the path, if the signed-in user may see it (else the API's 403)."""
    who = await signed_in(request)
    async with services(request).sessions() as s:
        return await space_for(s, who, request.path_params["space"])


async def form_action(request: Request) -> tuple[Principal, Space, dict[str, str]]:
    """A form posted on a Space's page: who, which Space, and the form (CSRF checked)."""
    space = await signed_in_space(request)
    form = await read_form(request)
    return await signed_in(request), space, form


async def read_form(request: Request) -> dict[str, str]:
    """A URL-encoded form (first value of each field), refused without this session's
    CSRF token."""
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM:
            raise TooLarge("This form is larger than the Panel accepts")
        chunks.append(chunk)
    text = b"".join(chunks).decode("utf-8", errors="replace")
    form = {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
    sessions = panel_sessions(request)
    if not sessions.csrf_ok(sessions.nonce_from(request.cookies), form.get(CSRF_FIELD)):
        raise CsrfRefused()
    return form


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200
) -> Response:
    """A page; every one knows the CSRF token for its forms and the Panel's base path.
    A page shown before sign-in ties its forms to a fresh pre-session cookie."""
    sessions = panel_sessions(request)
    nonce = sessions.nonce_from(request.cookies)
    fresh = None
    if nonce is None:
        fresh = sessions.new_presession()
        nonce = sessions.presession_nonce(fresh)
        assert nonce is not None
    values = {"base": BASE, "csrf": sessions.csrf_for(nonce), "csrf_field": CSRF_FIELD}
    values.update(context or {})
    response = TEMPLATES.TemplateResponse(request, name, values, status_code=status)
    if fresh is not None:
        set_cookie(request, response, PRESESSION_COOKIE, fresh, max_age=PRESESSION_TTL_S)
    return response


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=BASE + "/" if name == PRESESSION_COOKIE else "/",
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )


def redirect(path: str) -> RedirectResponse:
    """303 so the browser follows a POST with a GET."""
    return RedirectResponse(BASE + path, status_code=303)
