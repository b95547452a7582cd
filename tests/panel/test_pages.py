"""The Panel without a browser (httpx against the app in-process): sign-in, the session
cookie's flags, CSRF refusals, security headers, the token never in a page, and isolation
between organizations."""

from __future__ import annotations

import asyncio
import re
import time

import httpx

from manager.db.models import Hub, StoredSequence
from manager.panel.app import CSP
from manager.panel.session import CACHE_TTL_S, CSRF_HEADER, SESSION_COOKIE
from manager.services.access_keys import MAX_LIVE_KEYS
from manager.services.context import Services
from manager.services.tokens import TokenService
from tests.conftest import SQLITE_ONLY, World, bearer

pytestmark = SQLITE_ONLY

CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF_INPUT.search(html)
    assert found, html[:500]
    return found.group(1)


async def sign_in(api: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await api.get("/panel/signin")
    assert form.status_code == 200
    return await api.post(
        "/panel/signin", data={"csrf": csrf_of(form.text), "token": token}, follow_redirects=False
    )


async def test_sign_in_sets_a_strict_httponly_cookie_without_the_token(
    api: httpx.AsyncClient, world: World
):
    resp = await sign_in(api, world.admin.token)
    assert resp.status_code == 303 and resp.headers["location"] == "/panel/spaces"
    cookie = next(
        c for c in resp.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "=")
    )
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain HTTP here; under TLS the cookie is Secure
    assert world.admin.token not in cookie and world.admin.token_id in cookie
    page = await api.get("/panel/spaces")
    assert page.status_code == 200 and world.space_id in page.text
    assert world.admin.token not in page.text


async def test_secure_cookie_under_tls(svc: Services, world: World):
    from manager.web.app import create_app

    transport = httpx.ASGITransport(app=create_app(svc))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as api:
        resp = await sign_in(api, world.admin.token)
    cookie = next(
        c for c in resp.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "=")
    )
    assert "secure" in {part.strip().lower() for part in cookie.split(";")}


async def test_wrong_token_is_refused_in_words(api: httpx.AsyncClient, world: World):
    resp = await sign_in(api, world.admin.token[:-4] + "AAAA")
    assert resp.status_code == 401
    assert "That token was not accepted" in resp.text
    assert SESSION_COOKIE + "=" not in resp.headers.get("set-cookie", "")
    assert (await api.get("/panel/spaces", follow_redirects=False)).headers[
        "location"
    ] == "/panel/signin"


async def test_forms_without_csrf_are_refused(api: httpx.AsyncClient, world: World):
    await api.get("/panel/signin")
    refused = await api.post("/panel/signin", data={"token": world.admin.token})
    assert refused.status_code == 403 and "security token" in refused.text
    assert (await sign_in(api, world.admin.token)).status_code == 303
    space = f"/panel/space/{world.space_id}"
    for path, data in [
        (f"{space}/keys", {"description": "x"}),
        (f"{space}/keys/revoke", {"all": "yes"}),
        ("/panel/signout", {}),
        (f"{space}/keys", {"description": "x", "csrf": "forged"}),
    ]:
        resp = await api.post(path, data=data)
        assert resp.status_code == 403, path
        assert "security token" in resp.text and "Traceback" not in resp.text
    keys = await api.get(f"/api/v1/space/{world.space_id}/apikey", headers=bearer(world.admin))
    assert keys.json() == {"accessKeys": []}


async def test_api_by_cookie_needs_the_csrf_header_to_write(api: httpx.AsyncClient, world: World):
    await sign_in(api, world.admin.token)
    url = f"/api/v1/space/{world.space_id}/apikey"
    assert (await api.get(url)).status_code == 200  # reads with the cookie alone
    assert (await api.post(url, json={})).status_code == 403
    page = await api.get(f"/panel/space/{world.space_id}")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token
    made = await api.post(url, json={"description": "cookie"}, headers={CSRF_HEADER: token[1]})
    assert made.status_code == 200 and made.json()["accessKey"]
    wrong = await api.post(url, json={}, headers={CSRF_HEADER: token[1][:-2] + "xx"})
    assert wrong.status_code == 403


async def test_headers_on_every_panel_answer(api: httpx.AsyncClient, world: World):
    await sign_in(api, world.admin.token)
    for path in [
        "/panel/signin",
        "/panel/spaces",
        f"/panel/space/{world.space_id}",
        "/panel/static/panel.js",
        "/panel/nowhere",
    ]:
        resp = await api.get(path)
        assert resp.headers["content-security-policy"] == CSP, path
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in CSP and "'unsafe-inline'" not in CSP
    page = (await api.get(f"/panel/space/{world.space_id}")).text
    assert "<script>" not in page and " on" + "click=" not in page and "style=" not in page
    assert (await api.get("/panel/nowhere")).status_code == 404


async def test_another_organization_sees_none_of_it(api: httpx.AsyncClient, world: World):
    await sign_in(api, world.other_user.token)
    spaces = await api.get("/panel/spaces")
    assert world.other_space_id in spaces.text and world.space_id not in spaces.text
    for path in [
        f"/panel/space/{world.space_id}",
        f"/panel/space/{world.space_id}/hubs",
        f"/panel/space/{world.space_id}/hub/any",
        f"/panel/space/{world.space_id}/hub/any/confirm?action=delete",
    ]:
        resp = await api.get(path)
        assert resp.status_code == 403, path
        assert "not yours to see" in resp.text
    page = await api.get(f"/panel/space/{world.other_space_id}")
    form = csrf_of(page.text)
    resp = await api.post(
        f"/panel/space/{world.space_id}/keys", data={"csrf": form, "description": "x"}
    )
    assert resp.status_code == 403
    assert (await api.get(f"/api/v1/space/{world.space_id}/apikey")).status_code == 403


async def test_revoked_token_ends_the_session(api: httpx.AsyncClient, svc: Services, world: World):
    await sign_in(api, world.admin.token)
    assert (await api.get("/panel/spaces")).status_code == 200
    async with svc.sessions() as s, s.begin():
        await TokenService.revoke(s, world.admin.token_id)
    await asyncio.sleep(CACHE_TTL_S + 0.1)  # a session's token is cached, like bearer tokens
    resp = await api.get("/panel/spaces", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/panel/signin"


async def test_generate_without_javascript_shows_the_key_once(api: httpx.AsyncClient, world: World):
    await sign_in(api, world.admin.token)
    space = f"/panel/space/{world.space_id}"
    for n in range(MAX_LIVE_KEYS):
        page = await api.get(space)
        assert "key-limit" not in page.text
        made = await api.post(
            f"{space}/keys", data={"csrf": csrf_of(page.text), "description": f"k{n}"}
        )
        assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
        key = re.search(r'id="new-key-value" class="secret">([^<]+)<', made.text)
        assert key and key[1].startswith("SCP-")
        org_space = f"{world.org_id}:{world.space_id}"
        assert (
            f"scramjet-transform-hub --platform-api http://testserver --platform-space "
            f"{org_space} --platform-api-key {key[1]}" in made.text
        )
        assert key[1] not in (await api.get(space)).text
    full = await api.get(space)
    assert "the most a Space can" in full.text and 'id="generate" disabled' in full.text
    refused = await api.post(f"{space}/keys", data={"csrf": csrf_of(full.text)})
    assert refused.status_code == 409 and "revoke one first" in refused.text
    revoked = await api.post(
        f"{space}/keys/revoke", data={"csrf": csrf_of(full.text), "all": "yes"}
    )
    assert revoked.status_code == 303 and "revoked-all" in revoked.headers["location"]
    after = await api.get(revoked.headers["location"])
    assert "Every access key of this Space was revoked" in after.text
    assert "No access key yet" in after.text


async def test_errors_are_words(api: httpx.AsyncClient, world: World):
    await sign_in(api, world.admin.token)
    space = f"/panel/space/{world.space_id}"
    gone = await api.get(f"{space}/hub/nope")
    assert gone.status_code == 404 and "Hub nope is not in this Space" in gone.text
    page = await api.get(space)
    resp = await api.post(f"{space}/hub/nope/disconnect", data={"csrf": csrf_of(page.text)})
    assert resp.status_code == 404 and "Hub nope not found" in resp.text
    fragment = await api.get(f"{space}/hub/nope/state", headers={"x-panel-fragment": "1"})
    assert fragment.status_code == 404 and fragment.text.startswith("Hub nope")
    for text in (gone.text, resp.text):
        assert "Traceback" not in text and "<h1>" in text


async def test_hub_list_pages_and_searches_10000_hubs_server_side(
    api: httpx.AsyncClient, svc: Services, world: World
):
    now = int(time.time() * 1000)
    async with svc.sessions() as s, s.begin():
        s.add_all(
            Hub(
                space_id=world.space_id,
                hub_id=f"hub-{n:05d}",
                description="gpu box" if n % 1000 == 7 else "",
                tags=["edge"] if n % 2 else [],
                created_ms=now + n,
            )
            for n in range(10_000)
        )
    await sign_in(api, world.admin.token)
    rows = f"/panel/space/{world.space_id}/hubs"
    started = time.perf_counter()
    first = await api.get(rows)
    last = await api.get(rows + "?page=400")
    found = await api.get(rows + "?q=gpu")
    took = time.perf_counter() - started
    assert "10000 Hubs" in first.text and "page 1 of 400" in first.text
    assert first.text.count('data-hub="') == 25 and 'data-hub="hub-00000"' in first.text
    assert 'data-hub="hub-09999"' in last.text and "page 400 of 400" in last.text
    assert "10 Hubs matching" in found.text and 'data-hub="hub-09007"' in found.text
    assert (await api.get(rows + "?q=100%25")).text.count('data-hub="') == 0
    assert took < 3.0, f"three pages of a 10,000-Hub Space took {took:.2f} s"


def limit_rows(html: str) -> dict[str, str]:
    """The "Plan and limits" card's rows: limit key -> the row's text, tags stripped."""
    card = html.split('id="plan"', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r'<tr data-limit="([^"]+)"([^>]*)>(.*?)</tr>', card, re.S)
    return {
        key: " ".join(re.sub(r"<[^>]+>", " ", body).split()) + (" [reached]" if attrs else "")
        for key, attrs, body in rows
    }


async def test_the_space_page_shows_its_plan_and_usage(
    api: httpx.AsyncClient, svc: Services, world: World
):
    await sign_in(api, world.admin.token)
    space = f"/panel/space/{world.space_id}"
    page = (await api.get(space)).text
    assert "Plan and limits" in page and 'id="plan-name">default<' in page
    assert limit_rows(page) == {
        "hubsPerSpace": "Hubs connected at once 0 Hubs, unlimited",
        "storeBytesPerSpace": "Store 0 bytes, unlimited",
        "spacesPerOrg": "Spaces in the organization 1 Space, unlimited",
        "requestsPerSecond": "Requests to Hubs per API token unlimited",
    }

    # The same limits `GET …/config` shows, after an admin puts the org on a plan and sets
    # this Space's own Hub limit.
    h = bearer(world.admin)
    made = await api.post(
        "/api/v1/plans",
        headers=h,
        json={
            "name": "team",
            "hubsPerSpace": 5,
            "spacesPerOrg": 1,
            "storeBytesPerSpace": 5 * 2**20,
            "requestsPerSecond": 20,
        },
    )
    assert made.status_code == 201, made.text
    assert (
        await api.put(f"/api/v1/org/{world.org_id}/plan", headers=h, json={"plan": "team"})
    ).status_code == 200
    resp = await api.put(
        f"/api/v1/space/{world.space_id}/limits", headers=h, json={"hubsPerSpace": 0}
    )
    assert resp.status_code == 200, resp.text
    async with svc.sessions() as s, s.begin():
        s.add(
            StoredSequence(
                space_id=world.space_id,
                seq_id="seq-1",
                size=3 * 2**20 + 2**19,
                sha256="0" * 64,
                path="unused",
                created_ms=int(time.time() * 1000),
            )
        )
    page = (await api.get(space)).text
    assert 'id="plan-name">team<' in page
    assert limit_rows(page) == {
        "hubsPerSpace": "Hubs connected at once 0 of 0 Hubs limit reached (set for this Space) "
        "[reached]",
        "storeBytesPerSpace": "Store 3.5 MiB of 5 MiB",
        "spacesPerOrg": "Spaces in the organization 1 of 1 Space limit reached [reached]",
        "requestsPerSecond": "Requests to Hubs per API token 20 a second, bursts of up to 20",
    }
    config = await api.get(f"/api/v1/space/{world.space_id}/api/v1/config", headers=h)
    limits = config.json()["config"]["limits"]
    assert limits["storeBytesPerSpace"] == {
        "limit": 5 * 2**20,
        "used": 3 * 2**20 + 2**19,
        "source": "plan",
    }
    assert limits["spacesPerOrg"]["used"] == limits["spacesPerOrg"]["limit"] == 1

    # Another organization's page shows its own plan, not this one.
    await sign_in(api, world.other_user.token)
    other = (await api.get(f"/panel/space/{world.other_space_id}")).text
    assert 'id="plan-name">default<' in other and "team" not in other
