"""The manager's own HTTP API as an OpenAPI 3.1 document, written by hand as plain data.

Hand-written because the endpoints are thin Starlette functions with nothing to derive a
schema from, and because the shapes are the clients' contract (space-api.md), not whatever
the code happens to build. tests/web/test_openapi.py keeps the two honest: every route the
app registers must be described here and nothing else, and schemathesis checks the real
responses against these shapes.

Operations marked `x-stream: true` answer with a response that replays history and then
tails forever (logs, audit, topics); a generic client or fuzzer cannot wait for their end.
The Hub tunnels (HTTP CONNECT and WebSocket on `/api/v1/{org}/{space}/`) are not HTTP APIs
at all, so they are only mentioned in the description.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from manager import __version__
from manager.common import MAX_DESCRIPTION
from manager.services import plans

JSON = dict[str, Any]

SPACE = "/api/v1/space/{space}/api/v1"
HUB_API = SPACE + "/sth/{hub}/api/v1"
# A proxied route accepts every method; these are the ones the document lists for it.
PROXY_METHODS = ("get", "put", "post", "delete", "patch")

TOPIC_TYPES = ["application/x-ndjson", "text/x-ndjson", "text/plain", "application/octet-stream"]

DESCRIPTION = """\
Control plane for Scramjet Transform Hubs: the Middleware and Space API that the `si` CLI
and the Scramjet API clients speak, aggregated over the Hubs connected to each Space.

Every path except `/`, `/healthz`, `/readyz` and this document needs
`Authorization: Bearer <token>`; a missing, wrong or revoked token, or a Space of another
organization, gets `403 {"message": "Forbidden"}`. Other errors are `{"error": "<text>"}`.
Duplicate slashes in paths are collapsed and unknown query parameters are ignored.

Hubs attach on the same port with `CONNECT /api/v1/{org}/{space}/` (what an unmodified
STH speaks) or a WebSocket to that path (`space-manager connect`), authenticated with a
Space access key; those tunnels carry BPMux and are not described as operations here.
"""


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: JSON, description: str) -> JSON:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> JSON:
    return _json(_ref("Error"), description)


def _stream(media_type: str, description: str) -> JSON:
    return {
        "description": description,
        "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
    }


def _string(**extra: Any) -> JSON:
    return {"type": "string", **extra}


def _array(items: JSON) -> JSON:
    return {"type": "array", "items": items}


def _object(required: list[str], properties: JSON, **extra: Any) -> JSON:
    return {"type": "object", "required": required, "properties": properties, **extra}


NO_NUL = r"^[^\x00]*$"
FORBIDDEN = {"$ref": "#/components/responses/Forbidden"}
MALFORMED = _error("Malformed request, e.g. a NUL character in the path")
SPACE_UNKNOWN = _error("No such Space (admins; other callers get 403 instead)")
BAD_JSON = _error("Malformed JSON body, or not the shape this operation expects")
TOO_LARGE = _error("Body larger than the limit")
HUB_DOWN = _error("No connected (or healthy) Hub can serve this")

SPACE_PARAM: JSON = {
    "name": "space",
    "in": "path",
    "required": True,
    "description": "Space id, `<orgId>-<suffix>`",
    "schema": _string(pattern=r"^[^/]+$", maxLength=120),
}
HUB_PARAM: JSON = {
    "name": "hub",
    "in": "path",
    "required": True,
    "description": "Hub id, as the Hub chose it (`--id`) or the manager gave it",
    # `.` and `..` are valid ids a URL cannot carry: clients normalise them away.
    "schema": _string(pattern=r"^(?!\.\.?$)[A-Za-z0-9_.:@+-]{1,200}$"),
}
SEQ_PARAM: JSON = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "Sequence id in the Store",
    "schema": _string(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,199}$"),
}
TOPIC_PARAM: JSON = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "Topic name: letters, digits, `_`, `+`, `-`",
    "schema": _string(pattern=r"^[a-zA-Z0-9_+-]{1,200}$"),
}


def _header(name: str, description: str, **schema: Any) -> JSON:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": _string(**schema),
    }


def _op(
    op_id: str,
    summary: str,
    responses: JSON,
    *,
    tag: str,
    params: list[JSON] | None = None,
    body: JSON | None = None,
    public: bool = False,
    stream: bool = False,
) -> JSON:
    op: JSON = {"operationId": op_id, "summary": summary, "tags": [tag]}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    if public:
        op["security"] = []
    else:
        responses = {"400": MALFORMED, **responses, "403": FORBIDDEN}
    op["responses"] = responses
    if stream:
        op["x-stream"] = True
    return op


def _space_get(op_id: str, summary: str, schema: JSON, **kw: Any) -> JSON:
    """Reads of the Space's view can fail only because the Space is not there (or, for
    non-admins, not theirs: 403), so they share their shape."""
    extra = kw.pop("responses", {})
    return _op(
        op_id,
        summary,
        {"200": _json(schema, summary), "404": SPACE_UNKNOWN, **extra},
        tag="space",
        params=[SPACE_PARAM, *kw.pop("params", [])],
        **kw,
    )


def _json_body(schema: JSON, description: str) -> JSON:
    """Optional: an empty body and JSON `null` both mean `{}` (Py clients send `null`)."""
    return {
        "required": False,
        "description": description,
        "content": {"application/json": {"schema": {"oneOf": [schema, {"type": "null"}]}}},
    }


def _required_json(schema: JSON) -> JSON:
    """A JSON body the operation cannot do without (an empty body or `null` is a 400)."""
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _proxy(method: str, with_path: bool) -> JSON:
    params = [SPACE_PARAM, HUB_PARAM]
    if with_path:
        params.append(
            {
                "name": "path",
                "in": "path",
                "required": True,
                "description": "The rest of the Hub API path. Unencoded `/` separate more "
                "segments as usual; `.` and `..` segments and encoded `/`, `\\` or NUL are refused",
                "schema": _string(pattern=r"^(?!\.\.?$)[^/\\\x00]+$"),
            }
        )
    op = _op(
        f"hub_{method}" + ("_path" if with_path else "_root"),
        f"{method.upper()} on the Hub's own API, streamed both ways",
        {
            "400": _error("Path segments `.`, `..` or encoded `/` are refused"),
            "404": _error("No such Space or Hub"),
            "429": _error(
                "Too many requests in flight to this Hub, or the token is over its plan's "
                "`requestsPerSecond` (then with `Retry-After` and the plan named)"
            ),
            "502": _error("The Hub's answer was broken or the Hub went away"),
            "503": _error("The Hub is known but not connected, or busy"),
            "504": _error("The Hub did not open a channel in time"),
            "default": {"description": "Whatever the Hub answered (see the STH API)"},
        },
        tag="hub",
        params=params,
    )
    op["description"] = (
        "Forwarded to `/api/v1/<path>` of the Hub through its tunnel: method, query, body "
        "and headers (minus hop-by-hop ones and `Authorization`) go to the Hub, its status, "
        "headers and body come back as they arrive. Streams (logs, instance output, topics) "
        "may not end."
    )
    if method in ("put", "post", "patch"):
        op["requestBody"] = {
            "required": False,
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    return op


def _schemas() -> JSON:
    loose = {"type": "object", "additionalProperties": True}
    str_list = _array(_string())
    return {
        "Error": _object(["error"], {"error": _string()}),
        "Forbidden": _object(["message"], {"message": _string(enum=["Forbidden"])}),
        "Service": _object(["service", "api"], {"service": _string(), "api": _string()}),
        "Version": _object(
            ["service", "apiVersion", "version", "build"],
            {k: _string() for k in ("service", "apiVersion", "version", "build")},
        ),
        "SpaceSummary": _object(
            ["id", "name", "orgId"], {"id": _string(), "name": _string(), "orgId": _string()}
        ),
        "Plan": _object(
            ["name", *plans.COLUMNS],
            {
                "name": _string(pattern=plans.NAME_PATTERN),
                **{k: _limit_value(k, nullable=True) for k in plans.COLUMNS},
            },
            description="A plan's limits; null is unlimited",
        ),
        "Limit": _object(
            ["limit", "source"],
            {
                "limit": {"type": ["integer", "null"]},
                "used": {"type": "integer"},
                "source": _string(
                    description="`plan`, `space` (the Space's own value), `fixed`, or the "
                    "global setting that is tighter (`MANAGER_HUB_LIMIT`)"
                ),
            },
        ),
        "LimitError": _object(
            ["error", "plan", "limit", "max"],
            {
                "error": _string(),
                "plan": _string(),
                "limit": _string(enum=list(plans.COLUMNS)),
                "max": {"type": ["integer", "null"]},
                "used": {"type": "integer"},
            },
        ),
        "AccessKey": _object(
            ["created", "description"],
            {"created": {"type": "integer"}, "description": _string()},
        ),
        "HubInfo": _object(
            ["id", "info", "healthy", "selfHosted", "isConnectionActive"],
            {
                "id": _string(),
                "info": {
                    "type": "object",
                    "properties": {
                        k: _string(format="date-time")
                        for k in ("created", "lastConnected", "lastDisconnected")
                    },
                },
                "healthy": {"type": "boolean"},
                "selfHosted": {"type": "boolean"},
                "isConnectionActive": {"type": "boolean"},
                "description": _string(),
                "tags": str_list,
                "disconnectReason": _string(),
                "topics": str_list,
                "sequences": str_list,
                "instances": str_list,
            },
        ),
        "LoadCheck": _object(
            ["avgLoad", "currentLoad", "memFree", "memUsed", "fsSize"],
            {
                "avgLoad": {"type": "number"},
                "currentLoad": {"type": "number"},
                "memFree": {"type": "integer"},
                "memUsed": {"type": "integer"},
                "fsSize": _array(loose),
                "hubs": {
                    "type": "object",
                    "description": "Each healthy Hub's own last LOAD report, by Hub id",
                    "additionalProperties": loose,
                },
            },
        ),
        "SequenceConfig": _object(
            ["id"],
            {
                "type": _string(),
                "id": _string(),
                "name": _string(),
                "version": _string(),
                "engines": loose,
                "entrypointPath": _string(),
                "language": _string(),
                "packageSize": {"type": "integer"},
            },
        ),
        "Sequence": _object(
            ["id"],
            {
                "id": _string(),
                "config": loose,
                "instances": _array({}),
                "location": _string(description="Hub id, or `store` for the Sequence Store"),
            },
        ),
        "Instance": _object(["id"], {"id": _string(), "location": _string()}),
        "Topic": _object(
            ["name", "contentType", "actors"],
            {
                "name": _string(),
                "contentType": _string(),
                "actors": _array(
                    _object(
                        ["role", "type", "stream", "retired"],
                        {
                            "role": _string(enum=["provider", "consumer"]),
                            "type": _string(enum=["api", "host"]),
                            "stream": {"type": "boolean"},
                            "hostId": _string(),
                            "contentType": _string(),
                            "retired": {"type": "boolean"},
                        },
                    )
                ),
            },
        ),
        "Entities": _object(
            ["hubs", "topics", "sequences", "instances"],
            {k: str_list for k in ("hubs", "topics", "sequences", "instances")},
        ),
        "StartRequest": {
            "type": "object",
            "description": "Hub start payload (appConfig, args, instanceId, topics, limits) "
            "plus where to start: a Hub id, or tags the chosen Hub must carry",
            "properties": {
                "hub": _string(),
                "tags": {"oneOf": [_string(), str_list]},
                "appConfig": loose,
                "args": _array({}),
            },
        },
    }


def _limit_value(name: str, *, nullable: bool = False, space: bool = False) -> JSON:
    words = ["unlimited", "plan"] if space else ["unlimited"]
    number = {"type": "integer", "minimum": plans.LEAST.get(name, 0), "maximum": plans.MOST[name]}
    options: list[JSON] = [number, _string(enum=words)]
    if nullable:
        options.append({"type": "null"})
    return {"oneOf": options}


LIMIT_REFUSED = _json(_ref("LimitError"), "Over a limit of the organization's plan")
ADMINS = "Platform admins only (others get 403). "


def _plan_paths() -> JSON:
    """The platform admin's plans and limits (README "Plans and limits")."""
    limits = {k: _limit_value(k, nullable=True) for k in plans.COLUMNS}
    plan_body: JSON = {"type": "object", "additionalProperties": False, "properties": limits}
    space_limits = _object(
        ["spaceId", "plan", *plans.SPACE_LIMITS],
        {"spaceId": _string(), "plan": _string(), **{k: _ref("Limit") for k in plans.SPACE_LIMITS}},
    )
    name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "Plan name",
        "schema": _string(pattern=plans.NAME_PATTERN),
    }
    org_param = {
        "name": "org",
        "in": "path",
        "required": True,
        "description": "Organization id, `org-<uuid>`",
        "schema": _string(pattern=r"^[^/]+$", maxLength=80),
    }
    return {
        "/api/v1/plans": {
            "get": _op(
                "list_plans",
                ADMINS + "Every plan, `default` (built in, unlimited) first",
                {"200": _json(_object(["plans"], {"plans": _array(_ref("Plan"))}), "Plans")},
                tag="plans",
            ),
            "post": _op(
                "create_plan",
                ADMINS + "Create a plan; limits left out are unlimited",
                {
                    "201": _json(_ref("Plan"), "The new plan"),
                    "400": BAD_JSON,
                    "409": _error("A plan of that name exists"),
                    "413": TOO_LARGE,
                },
                tag="plans",
                body=_required_json(
                    {
                        **plan_body,
                        "required": ["name"],
                        "properties": {
                            "name": _string(pattern=plans.NAME_PATTERN),
                            **limits,
                        },
                    }
                ),
            ),
        },
        "/api/v1/plans/{name}": {
            "patch": _op(
                "update_plan",
                ADMINS + "Change the limits given. Lowering one never drops connected Hubs or "
                "stored packages; it refuses what would go over it from then on",
                {
                    "200": _json(_ref("Plan"), "The plan now"),
                    "400": BAD_JSON,
                    "404": _error("No such plan"),
                    "413": TOO_LARGE,
                },
                tag="plans",
                params=[name_param],
                body=_json_body(plan_body, "Limits to change (null: unlimited)"),
            )
        },
        "/api/v1/org/{org}/plan": {
            "put": _op(
                "set_org_plan",
                ADMINS + "Put an organization on a plan",
                {
                    "200": _json(
                        _object(["orgId", "plan"], {"orgId": _string(), "plan": _ref("Plan")}),
                        "The organization's plan now",
                    ),
                    "400": BAD_JSON,
                    "404": _error("No such organization or plan"),
                    "413": TOO_LARGE,
                },
                tag="plans",
                params=[org_param],
                body=_required_json(
                    _object(["plan"], {"plan": _string(pattern=plans.NAME_PATTERN)})
                ),
            )
        },
        "/api/v1/space/{space}/limits": {
            "put": _op(
                "set_space_limits",
                ADMINS + "Give a Space its own Hub or store limit instead of its plan's "
                "(`plan`: back to the plan's)",
                {
                    "200": _json(space_limits, "The Space's per-Space limits now"),
                    "400": BAD_JSON,
                    "404": SPACE_UNKNOWN,
                    "413": TOO_LARGE,
                },
                tag="plans",
                params=[SPACE_PARAM],
                body=_required_json(
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {k: _limit_value(k, space=True) for k in plans.SPACE_LIMITS},
                    }
                ),
            )
        },
    }


def _platform_paths() -> JSON:
    keys = "/api/v1/space/{space}/apikey"
    return {
        "/api/v1/version": {
            "get": _op(
                "middleware_version",
                "Middleware version",
                {"200": _json(_ref("Version"), "The middleware's identity")},
                tag="middleware",
            )
        },
        "/api/v1/metrics": {
            "get": _op(
                "metrics",
                "Prometheus metrics (platform admins only)",
                {"200": _stream("text/plain", "Prometheus text exposition format 0.0.4")},
                tag="middleware",
            )
        },
        "/api/v1/spaces": {
            "get": _op(
                "spaces",
                "The caller's Spaces, their default first",
                {"200": _json(_array(_ref("SpaceSummary")), "Spaces")},
                tag="middleware",
            ),
            "post": _op(
                "create_space",
                "Create a Space in the caller's organization (admins: any `orgId`), if its "
                "plan's `spacesPerOrg` has room",
                {
                    "200": _json(_ref("SpaceSummary"), "The new Space"),
                    "400": BAD_JSON,
                    "404": _error("No such organization (admins)"),
                    "409": LIMIT_REFUSED,
                    "413": TOO_LARGE,
                },
                tag="middleware",
                body=_json_body(
                    {
                        "type": "object",
                        "properties": {
                            "name": _string(maxLength=200, pattern=NO_NUL),
                            "orgId": _string(maxLength=80, pattern=NO_NUL),
                        },
                    },
                    "A display name; `orgId` defaults to the caller's organization",
                ),
            ),
        },
        "/api/v1/audit": {
            "get": _op(
                "audit_all",
                "Audit records of all the caller's Spaces: history, then live",
                {"200": _stream("application/x-ndjson", "One audit record per line")},
                tag="middleware",
                stream=True,
            )
        },
        keys: {
            "get": _op(
                "list_access_keys",
                "The Space's live access keys (never the key values)",
                {
                    "200": _json(
                        _object(["accessKeys"], {"accessKeys": _array(_ref("AccessKey"))}),
                        "Keys by creation time",
                    ),
                    "404": SPACE_UNKNOWN,
                },
                tag="access keys",
                params=[SPACE_PARAM],
            ),
            "post": _op(
                "create_access_key",
                "Make an access key for self-hosted Hubs; the key is shown only here",
                {
                    "200": _json(
                        _object(
                            ["accessKey", "created", "description"],
                            {
                                "accessKey": _string(),
                                "created": {"type": "integer"},
                                "description": _string(),
                            },
                        ),
                        "The new key; `created` is its id for revoking",
                    ),
                    "400": BAD_JSON,
                    "404": SPACE_UNKNOWN,
                    "409": _error("The Space already has 5 live keys"),
                    "413": TOO_LARGE,
                },
                tag="access keys",
                params=[SPACE_PARAM],
                body=_json_body(
                    {
                        "type": "object",
                        "properties": {
                            "description": {
                                "oneOf": [
                                    _string(maxLength=MAX_DESCRIPTION, pattern=NO_NUL),
                                    {"type": "null"},
                                ]
                            }
                        },
                    },
                    "What the key is for",
                ),
            ),
            "delete": _op(
                "revoke_access_keys",
                "Revoke one key (`x-revoke`) or all (`x-revoke-all: true`); their Hubs are "
                "disconnected",
                {
                    "200": _json(
                        _object(
                            ["message", "keysRevoked"],
                            {
                                "message": _string(),
                                "keysRevoked": {"type": "integer"},
                                "created": {"type": "integer"},
                            },
                        ),
                        "What was revoked",
                    ),
                    "400": _error("Neither `x-revoke` nor `x-revoke-all: true` given"),
                    "404": _error("No such Space, or no such live key"),
                },
                tag="access keys",
                params=[
                    SPACE_PARAM,
                    _header("x-revoke", "The key's `created` id, or the key itself"),
                    _header("x-revoke-all", "`true` (any case) revokes every key of the Space"),
                ],
            ),
        },
    }


def _space_paths() -> JSON:
    seq_list = _array(_ref("Sequence"))
    return {
        f"{SPACE}/version": {
            "get": _space_get("space_version", "Space (manager) version", _ref("Version"))
        },
        f"{SPACE}/load": {
            "get": _space_get("space_load", "Load summed over healthy Hubs", _ref("LoadCheck"))
        },
        f"{SPACE}/load-check": {
            "get": _space_get("space_load_check", "Same as /load", _ref("LoadCheck"))
        },
        f"{SPACE}/list": {
            "get": _space_get("hub_list", "The Space's Hubs", _array(_ref("HubInfo")))
        },
        f"{SPACE}/sth/{{hub}}/info": {
            "get": _space_get(
                "hub_info",
                "One Hub of the Space",
                _ref("HubInfo"),
                params=[HUB_PARAM],
                responses={"404": _error("No such Space or Hub")},
            )
        },
        f"{SPACE}/sth/{{hub}}": {
            "delete": _op(
                "delete_hub",
                "Forget a self-hosted Hub (`x-force: true` also drops a connected one)",
                {
                    "200": _json({"type": "object"}, "Deleted: `{}`"),
                    "404": _error("No such Space or Hub"),
                    "409": _error("The Hub is connected, or not self-hosted"),
                },
                tag="space",
                params=[SPACE_PARAM, HUB_PARAM, _header("x-force", "`true` (any case) to force")],
            )
        },
        f"{SPACE}/config": {
            "get": _space_get(
                "space_config",
                "Manager configuration for the Space, with each limit of its plan and what "
                "it uses now",
                _object(
                    ["config"],
                    {
                        "config": _object(
                            ["id", "orgId", "hubLimit", "limits"],
                            {
                                "id": _string(),
                                "orgId": _string(),
                                "hubLimit": {
                                    "type": "integer",
                                    "description": "Hubs connected at once (0: no limit)",
                                },
                                "limits": _object(
                                    ["plan", *plans.COLUMNS, "accessKeys"],
                                    {
                                        "plan": _string(),
                                        **{k: _ref("Limit") for k in plans.COLUMNS},
                                        "accessKeys": _ref("Limit"),
                                    },
                                ),
                            },
                        )
                    },
                ),
            )
        },
        f"{SPACE}/sequences": {
            "get": _space_get("space_sequences", "Sequences on all Hubs", seq_list)
        },
        f"{SPACE}/all_sequences": {
            "get": _space_get(
                "space_all_sequences", "Sequences on all Hubs, then those in the Store", seq_list
            )
        },
        f"{SPACE}/instances": {
            "get": _space_get("space_instances", "Instances on all Hubs", _array(_ref("Instance")))
        },
        f"{SPACE}/topics": {
            "get": _space_get(
                "space_topics", "Topics with their providers and consumers", _array(_ref("Topic"))
            )
        },
        f"{SPACE}/entities": {
            "get": _space_get("space_entities", "Ids of everything in the Space", _ref("Entities"))
        },
        f"{SPACE}/health": {
            "get": _space_get(
                "space_health",
                "Manager liveness",
                _object(
                    ["uptime", "timestamp", "modules"],
                    {
                        "uptime": {"type": "number"},
                        "timestamp": {"type": "integer"},
                        "modules": {"type": "object", "additionalProperties": {"type": "boolean"}},
                    },
                ),
            )
        },
        f"{SPACE}/log": {
            "get": _op(
                "space_log",
                "Every Hub's log, lines prefixed `<hubId>: `; never ends",
                {"200": _stream("application/octet-stream", "Log lines"), "404": SPACE_UNKNOWN},
                tag="space",
                params=[SPACE_PARAM],
                stream=True,
            )
        },
        f"{SPACE}/audit": {
            "get": _op(
                "space_audit",
                "The Space's audit records: history, then live",
                {
                    "200": _stream("application/x-ndjson", "One audit record per line"),
                    "404": SPACE_UNKNOWN,
                },
                tag="space",
                params=[SPACE_PARAM],
                stream=True,
            )
        },
        f"{SPACE}/disconnect": {
            "post": _op(
                "disconnect_hubs",
                "Drop Hubs by id, all (`limit: 0`) or by the access key they joined with",
                {
                    "200": _json(
                        _object(
                            ["managerId", "disconnected"],
                            {
                                "managerId": _string(),
                                "disconnected": _array(
                                    _object(
                                        ["sthId", "reason"],
                                        {"sthId": _string(), "reason": _string()},
                                    )
                                ),
                            },
                        ),
                        "The Hubs dropped",
                    ),
                    "400": BAD_JSON,
                    "404": _error("No such Space, Hub or access key"),
                    "409": _error("The Hub is not connected"),
                    "413": TOO_LARGE,
                },
                tag="space",
                params=[SPACE_PARAM],
                body=_required_json(
                    {
                        "oneOf": [
                            _object(["id"], {"id": _string(pattern=NO_NUL)}),
                            _object(["limit"], {"limit": {"const": 0}}),
                            _object(["accessKey"], {"accessKey": _string()}),
                        ]
                    }
                ),
            )
        },
        **_store_paths(),
        **_topic_paths(),
        HUB_API: {m: _proxy(m, False) for m in PROXY_METHODS},
        f"{HUB_API}/{{path}}": {m: _proxy(m, True) for m in PROXY_METHODS},
    }


def _store_paths() -> JSON:
    package = {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "A gzip tar Sequence package with a package.json",
    }
    stored = {
        "200": _json(_ref("SequenceConfig"), "The stored Sequence's config"),
        "404": SPACE_UNKNOWN,
        "413": _json(
            {"anyOf": [_ref("LimitError"), _ref("Error")]},
            "Larger than MANAGER_STORE_MAX_BYTES, or over the Space's `storeBytesPerSpace` "
            "(then naming the plan and limit); nothing is stored",
        ),
        "422": _error("Not a Sequence package"),
    }
    return {
        f"{SPACE}/s3": {
            "get": _space_get("store_list", "The Sequence Store", _array(_ref("SequenceConfig"))),
            "put": _op(
                "store_put",
                "Store a package under a new id",
                stored,
                tag="store",
                params=[SPACE_PARAM],
                body=package,
            ),
        },
        f"{SPACE}/s3/{{id}}": {
            "put": _op(
                "store_put_id",
                "Store a package under this id (replacing one there)",
                {**stored, "400": _error("Not a valid Store id")},
                tag="store",
                params=[SPACE_PARAM, SEQ_PARAM],
                body=package,
            ),
            "delete": _op(
                "store_delete",
                "Remove a package from the Store",
                {
                    "200": _json(_object(["opStatus"], {"opStatus": _string()}), "Removed"),
                    "404": _error("No such Space or stored Sequence"),
                },
                tag="store",
                params=[SPACE_PARAM, SEQ_PARAM],
            ),
        },
        f"{SPACE}/s3/{{bucket}}/{{file}}": {
            "get": _op(
                "store_download",
                "A stored package, as Hubs fetch it (`s3/<anything>/<id>.tar.gz`)",
                {
                    "200": _stream("application/octet-stream", "The package"),
                    "404": _error("No such Space or package"),
                },
                tag="store",
                params=[
                    SPACE_PARAM,
                    {
                        "name": "bucket",
                        "in": "path",
                        "required": True,
                        "schema": _string(pattern=r"^[^/]+$"),
                    },
                    {
                        "name": "file",
                        "in": "path",
                        "required": True,
                        "schema": _string(pattern=r"^[^/]+\.tar\.gz$"),
                    },
                ],
            )
        },
        f"{SPACE}/store": {
            "delete": _op(
                "store_clear",
                "Empty the Sequence Store",
                {
                    "200": _json(
                        _object(["removed"], {"removed": {"type": "integer"}}), "How many"
                    ),
                    "404": SPACE_UNKNOWN,
                },
                tag="store",
                params=[SPACE_PARAM],
            )
        },
        f"{SPACE}/sequence/{{id}}/start": {
            "post": _op(
                "start_in_space",
                "Start a Sequence on a Hub of the Space (from the Store if the Hub lacks it)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["hubId", "sequenceId"],
                            "properties": {"hubId": _string(), "sequenceId": _string()},
                        },
                        "The Hub's start answer, plus where it ran",
                    ),
                    "400": BAD_JSON,
                    "404": _error("No such Space, or the Sequence is nowhere"),
                    "413": TOO_LARGE,
                    "503": HUB_DOWN,
                    "default": _json({"type": "object"}, "The Hub refused; its answer as is"),
                },
                tag="store",
                params=[
                    SPACE_PARAM,
                    {"name": "id", "in": "path", "required": True, "schema": _string()},
                ],
                body=_json_body(_ref("StartRequest"), "Start payload and placement"),
            )
        },
    }


def _topic_paths() -> JSON:
    bad = _error("Bad topic name or content type")
    return {
        f"{SPACE}/topic/{{name}}": {
            "post": _op(
                "topic_produce",
                "Send data into the Space-wide topic (created if missing)",
                {
                    "200": _json({"type": "object"}, "Taken; `x-end-stream: true` ended readers"),
                    "202": _json({"type": "object"}, "Taken; the topic stays open"),
                    "400": bad,
                    "404": SPACE_UNKNOWN,
                    "415": _error("The topic exists with another content type"),
                },
                tag="topics",
                params=[
                    SPACE_PARAM,
                    TOPIC_PARAM,
                    _header(
                        "x-end-stream",
                        "`true` (any case) ends Space-level readers; anything else does not",
                    ),
                ],
                body={
                    "required": False,
                    "content": {
                        t: {"schema": {"type": "string", "format": "binary"}} for t in TOPIC_TYPES
                    },
                },
            ),
            "get": _op(
                "topic_consume",
                "Read the Space-wide topic as data arrives; `content-type` picks its type",
                {
                    "200": _stream("application/octet-stream", "The topic's data"),
                    "400": bad,
                    "404": SPACE_UNKNOWN,
                    "415": _error("The topic exists with another content type"),
                },
                tag="topics",
                params=[SPACE_PARAM, TOPIC_PARAM],
                stream=True,
            ),
        },
    }


def build_document() -> JSON:
    """A fresh copy each call, so a caller may change it without touching anyone else's."""
    service = _json(_ref("Service"), "The service and where its API lives")
    return {
        "openapi": "3.1.0",
        "info": {"title": "Space manager", "version": __version__, "description": DESCRIPTION},
        "tags": [
            {"name": n}
            for n in (
                "meta",
                "middleware",
                "plans",
                "access keys",
                "space",
                "store",
                "topics",
                "hub",
            )
        ],
        "security": [{"bearer": []}],
        "paths": {
            "/": {"get": _op("root", "Service banner", {"200": service}, tag="meta", public=True)},
            "/healthz": {
                "get": _op(
                    "healthz",
                    "Liveness probe: the process serves HTTP (touches nothing else)",
                    {"200": _json(_object(["alive"], {"alive": {"const": True}}), "Alive")},
                    tag="meta",
                    public=True,
                )
            },
            "/readyz": {
                "get": _op(
                    "readyz",
                    "Readiness probe: database reachable, not draining (failing checks by name)",
                    {
                        "200": _json(_object(["ready"], {"ready": {"const": True}}), "Ready"),
                        "503": _json(
                            _object(
                                ["ready", "failing"],
                                {"ready": {"const": False}, "failing": _array(_string())},
                            ),
                            "Not ready: the names of the failing checks",
                        ),
                    },
                    tag="meta",
                    public=True,
                )
            },
            "/api/v1/openapi.json": {
                "get": _op(
                    "openapi",
                    "This document",
                    {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                    tag="meta",
                    public=True,
                )
            },
            **_platform_paths(),
            **_plan_paths(),
            **_space_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT-shaped opaque token (three base64url parts)",
                }
            },
            "responses": {"Forbidden": _json(_ref("Forbidden"), "Missing, wrong or foreign token")},
            "schemas": _schemas(),
        },
    }


@functools.cache
def _rendered() -> bytes:
    return json.dumps(build_document(), separators=(",", ":")).encode()


async def serve(_request: Request) -> Response:
    """Public on purpose: the document says what the API is, not anything about a Space."""
    return Response(_rendered(), media_type="application/json")
