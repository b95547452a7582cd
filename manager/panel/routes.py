"""The Panel's pages for signing in, Spaces, their Hubs and access keys: thin over services.

Actions are HTML forms (POST, CSRF field, then a 303 back) so they work without
JavaScript; confirmations are pages of their own for the same reason. Messages after an
action travel as a short code in the query string, never with a secret in it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from manager.db.models import Space
from manager.panel import hub_routes, views
from manager.panel.pages import (
    BASE,
    SignInNeeded,
    form_action,
    panel_sessions,
    read_form,
    redirect,
    render,
    services,
    set_cookie,
    signed_in,
    signed_in_space,
)
from manager.panel.session import PRESESSION_COOKIE, SESSION_COOKIE, SESSION_TTL_S
from manager.services import hub_admin, plans
from manager.services.access_keys import MAX_LIVE_KEYS
from manager.services.errors import Conflict
from manager.services.space_hubs import space_hubs
from manager.services.spaces import visible_spaces

NOTICES = {
    "disconnected": "Hub {hub} was disconnected. It keeps running on its machine and does not "
    "reconnect until it is restarted.",
    "deleted": "Hub {hub} was deleted from this Space.",
    "revoked": "The access key was revoked; Hubs that joined with it were disconnected.",
    "revoked-all": "Every access key of this Space was revoked.",
    "signed-out": "You are signed out.",
}


async def home(request: Request) -> Response:
    try:
        await signed_in(request)
    except SignInNeeded:
        return redirect("/signin")
    return redirect("/spaces")


async def signin_form(request: Request) -> Response:
    notice = NOTICES.get(request.query_params.get("done", ""))
    return render(request, "signin.html", {"notice": notice})


async def signin(request: Request) -> Response:
    form = await read_form(request)
    token = form.get("token", "").strip()
    svc = services(request)
    who = await svc.tokens.authenticate(token) if token else None
    if who is None or who.token_id is None:
        error = "That token was not accepted. Paste the whole API token, as make run printed it."
        return render(request, "signin.html", {"error": error}, status=401)
    response = redirect("/spaces")
    set_cookie(
        request,
        response,
        SESSION_COOKIE,
        panel_sessions(request).issue(who.token_id),
        max_age=SESSION_TTL_S,
    )
    response.delete_cookie(PRESESSION_COOKIE, path=BASE + "/")
    return response


async def signout(request: Request) -> Response:
    await read_form(request)
    response = redirect("/signin?done=signed-out")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def spaces(request: Request) -> Response:
    who = await signed_in(request)
    async with services(request).sessions() as s:
        rows = await visible_spaces(s, who)
    return render(request, "spaces.html", {"spaces": rows, "who": who})


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 8 else 1


async def _hub_page(request: Request, space: Space) -> views.HubPage:
    svc = services(request)
    query = request.query_params.get("q", "")
    hubs = await space_hubs(svc.registry, svc.routes, space.id, load=True)  # shown per Hub
    async with svc.sessions() as s:
        return await views.hub_page(s, hubs, space.id, query, _page_number(request))


def manager_url(request: Request) -> str:
    """The URL Hubs should use: the configured public one, else the one this browser used."""
    configured = services(request).settings.public_url
    return configured.rstrip("/") if configured else f"{request.url.scheme}://{request.url.netloc}"


async def _plan_card(request: Request, space: Space) -> views.PlanCard:
    """The Space's limits and usage, read as `GET …/config` reads them."""
    svc = services(request)
    async with svc.sessions() as s:
        usage = await plans.space_usage(
            s,
            space.id,
            space.org_id,
            await svc.routes.connected_count(space.id),
            svc.settings.hub_limit,
        )
    return views.plan_card(usage)


async def space_page(request: Request) -> Response:
    space = await signed_in_space(request)
    hubs = await _hub_page(request, space)
    keys = await _keys(request, space)
    notice = NOTICES.get(request.query_params.get("done", ""), "")
    context = {
        "space": space,
        "hubs": hubs,
        "keys": keys,
        "max_keys": MAX_LIVE_KEYS,
        "plan": await _plan_card(request, space),
        "manager_url": manager_url(request),
        "notice": notice.format(hub=request.query_params.get("hub", "")),
    }
    return render(request, "space.html", context)


async def hub_rows(request: Request) -> Response:
    """The Hub table's body and pager, which the page's script polls."""
    space = await signed_in_space(request)
    hubs = await _hub_page(request, space)
    return render(request, "_hub_rows.html", {"space": space, "hubs": hubs})


async def _keys(request: Request, space: Space) -> list[dict[str, object]]:
    svc = services(request)
    async with svc.sessions() as s:
        return await svc.keys.list_keys(s, space.id)


async def key_list(request: Request) -> Response:
    space = await signed_in_space(request)
    keys = await _keys(request, space)
    return render(request, "_keys.html", {"space": space, "keys": keys, "max_keys": MAX_LIVE_KEYS})


async def generate_key(request: Request) -> Response:
    """Without JavaScript: the key on a page of its own, shown this once (no-store)."""
    who, space, form = await form_action(request)
    svc = services(request)
    async with svc.sessions() as s, s.begin():
        made = await svc.keys.create(s, space.id, form.get("description", ""), who.requestor)
    context = {"space": space, "made": made, "manager_url": manager_url(request)}
    return render(request, "key_created.html", context)


async def revoke_key(request: Request) -> Response:
    who, space, form = await form_action(request)
    svc = services(request)
    if form.get("all") == "yes":
        async with svc.sessions() as s, s.begin():
            rows = await svc.keys.revoke_all_rows(s, space.id, who.requestor)
        done = "revoked-all"
    else:
        async with svc.sessions() as s, s.begin():
            rows = [await svc.keys.revoke(s, space.id, form.get("created", ""), who.requestor)]
        done = "revoked"
    await svc.keys.announce_revoked(space.id, rows)
    return redirect(f"/space/{space.id}?done={done}#keys")


ACTIONS = {"disconnect", "delete", "force"}


async def confirm(request: Request) -> Response:
    """Disconnect or delete asks first, on a page of its own (works without JavaScript)."""
    space = await signed_in_space(request)
    action = request.query_params.get("action", "")
    if action not in ACTIONS:
        action = "disconnect"
    hub = await hub_routes.detail(request, space)
    return render(request, "confirm.html", {"space": space, "hub": hub.line, "action": action})


async def hub_action(request: Request) -> Response:
    who, space, form = await form_action(request)
    hub_id = request.path_params["hub"]
    action = request.url.path.rsplit("/", 1)[1]
    svc = services(request)
    if action == "disconnect":
        async with svc.sessions() as s:
            await hub_admin.disconnect(
                s, svc.registry, svc.keys, svc.events, space.id, {"id": hub_id}
            )
        return redirect(f"/space/{space.id}?done=disconnected&hub={hub_id}")
    try:
        async with svc.sessions() as s, s.begin():
            force = form.get("force") == "yes"
            await hub_admin.delete_hub(
                s, svc.registry, svc.events, space.id, hub_id, force, who.requestor
            )
        svc.listing.invalidate(space.id)
    except Conflict:
        # Connected: the second confirmation, which forces it.
        return RedirectResponse(
            f"{BASE}/space/{space.id}/hub/{hub_id}/confirm?action=force", status_code=303
        )
    return redirect(f"/space/{space.id}?done=deleted&hub={hub_id}")


routes = [
    Route("/", home, methods=["GET"]),
    Route("/signin", signin_form, methods=["GET"]),
    Route("/signin", signin, methods=["POST"]),
    Route("/signout", signout, methods=["POST"]),
    Route("/spaces", spaces, methods=["GET"]),
    Route("/space/{space}", space_page, methods=["GET"]),
    Route("/space/{space}/hubs", hub_rows, methods=["GET"]),
    Route("/space/{space}/keys", key_list, methods=["GET"]),
    Route("/space/{space}/keys", generate_key, methods=["POST"]),
    Route("/space/{space}/keys/revoke", revoke_key, methods=["POST"]),
    Route("/space/{space}/hub/{hub}/confirm", confirm, methods=["GET"]),
    Route("/space/{space}/hub/{hub}/disconnect", hub_action, methods=["POST"]),
    Route("/space/{space}/hub/{hub}/delete", hub_action, methods=["POST"]),
]
