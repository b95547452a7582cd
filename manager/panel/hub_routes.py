"""A Hub's page: its load, Sequences, Instances and topics, the Space's store and audit.

The page itself and the fragments its script polls are rendered here from the live
registry and the store service. Acting on the Hub (send, start, stop, kill, streams) is
done by the page's script through the Space API's Hub proxy with the session cookie, so
there is one way to reach a Hub, not two.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from manager.db.models import Space
from manager.panel import views
from manager.panel.pages import render, services, signed_in_space
from manager.services.space_hubs import space_hubs


async def detail(request: Request, space: Space) -> views.HubDetail:
    """The Hub of the request's path, wherever its tunnel is (any replica)."""
    svc = services(request)
    hubs = await space_hubs(svc.registry, svc.routes, space.id, load=True)  # shown per Hub
    async with svc.sessions() as s:
        return await views.hub_detail(s, hubs, space.id, request.path_params["hub"])


async def hub_page(request: Request) -> Response:
    space = await signed_in_space(request)
    hub = await detail(request, space)
    stored = await services(request).store_packages.list_configs(space.id)
    return render(request, "hub.html", {"space": space, "hub": hub, "stored": stored})


async def hub_state(request: Request) -> Response:
    """Status, load, Sequences, Instances and topics: the part of the page that lives."""
    space = await signed_in_space(request)
    hub = await detail(request, space)
    return render(request, "_hub_state.html", {"space": space, "hub": hub})


async def store_list(request: Request) -> Response:
    space = await signed_in_space(request)
    stored = await services(request).store_packages.list_configs(space.id)
    hub_id = request.path_params["hub"]
    return render(request, "_store.html", {"space": space, "stored": stored, "hub_id": hub_id})


routes = [
    Route("/space/{space}/hub/{hub}", hub_page, methods=["GET"]),
    Route("/space/{space}/hub/{hub}/state", hub_state, methods=["GET"]),
    Route("/space/{space}/hub/{hub}/store", store_list, methods=["GET"]),
]
