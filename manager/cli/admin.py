"""Operator commands that work straight on the database: orgs, Spaces, tokens, access keys,
plans and limits.

Thin: each command opens one transaction and calls the same services the API uses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from manager.config import Settings
from manager.db import repo
from manager.db.engine import describe_error
from manager.services import plans as plan_service
from manager.services import spaces as space_service
from manager.services.context import Services
from manager.services.errors import ServiceError
from manager.services.tokens import TokenService

T = TypeVar("T")


def run_db(settings: Settings, work: Callable[[Services, AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction; service errors become a clean exit."""

    async def main() -> T:
        svc = Services.build(settings)
        try:
            async with svc.sessions() as s, s.begin():
                return await work(svc, s)
        finally:
            await svc.aclose()

    try:
        return asyncio.run(main())
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    except (SQLAlchemyError, ConnectionError, TimeoutError) as exc:
        raise click.ClickException(f"database unavailable ({describe_error(exc)})") from None


def settings_of(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


@click.group("org")
def org() -> None:
    """Organizations."""


@org.command("create")
@click.argument("name")
@click.pass_context
def org_create(ctx: click.Context, name: str) -> None:
    """Create an organization and print its id."""
    made = run_db(settings_of(ctx), lambda _svc, s: space_service.create_org(s, name))
    click.echo(made.id)


@org.command("set-plan")
@click.argument("org_id")
@click.argument("plan")
@click.pass_context
def org_set_plan(ctx: click.Context, org_id: str, plan: str) -> None:
    """Put an organization on a plan (`default` for the built-in one).

    A running manager applies it within a few seconds; lowering a limit refuses what would
    go over it from then on, it never drops connected Hubs or stored packages."""
    made = run_db(settings_of(ctx), lambda _svc, s: plan_service.set_org_plan(s, org_id, plan))
    click.echo(f"{org_id} is on plan {made.name}")


@click.group("space")
def space() -> None:
    """Spaces."""


@space.command("create")
@click.option("--org", "org_id", required=True, help="Organization id (org-<uuid>).")
@click.option("--name", default="", help="A display name.")
@click.pass_context
def space_create(ctx: click.Context, org_id: str, name: str) -> None:
    """Create a Space in an organization and print its id."""
    made = run_db(settings_of(ctx), lambda _svc, s: space_service.create_space(s, org_id, name))
    click.echo(made.id)


@space.command("list")
@click.pass_context
def space_list(ctx: click.Context) -> None:
    """List every Space as JSON lines."""

    async def work(_svc: Services, s: AsyncSession) -> list[dict[str, object]]:
        return [{"id": r.id, "orgId": r.org_id, "name": r.name} for r in await repo.list_spaces(s)]

    for row in run_db(settings_of(ctx), work):
        click.echo(json.dumps(row))


@space.command("set-limit")
@click.option("--space", "space_id", required=True, help="Space id.")
@click.option("--hubs", default=None, help="Hubs connected at once: N, unlimited or plan.")
@click.option("--store-bytes", default=None, help="Store bytes: N, unlimited or plan.")
@click.pass_context
def space_set_limit(
    ctx: click.Context, space_id: str, hubs: str | None, store_bytes: str | None
) -> None:
    """Give one Space its own Hub or store limit instead of its plan's (`plan`: back to the
    plan's). Prints the Space's limits as JSON."""
    given = {plan_service.HUBS: hubs, plan_service.STORE: store_bytes}
    raw = {k: v for k, v in given.items() if v is not None}
    if not raw:
        raise click.UsageError("give --hubs and/or --store-bytes")

    async def work(_svc: Services, s: AsyncSession) -> dict[str, object]:
        values = plan_service.parse_values(raw, plan_service.SPACE_LIMITS, space=True, text=True)
        return await plan_service.set_space_limits(s, space_id, values)

    click.echo(json.dumps(run_db(settings_of(ctx), work)))


@click.group("plan")
def plan() -> None:
    """Plans: named sets of limits an organization is put on (values: N or unlimited)."""


def limit_options(command: Callable[..., None]) -> Callable[..., None]:
    for name, help_text in reversed(PLAN_OPTIONS):
        command = click.option(f"--{name}", default=None, help=help_text)(command)
    return command


PLAN_OPTIONS = (
    ("hubs", "Hubs connected at once per Space."),
    ("spaces", "Spaces per organization."),
    ("store-bytes", "Sequence store bytes per Space."),
    ("rate", "Proxied requests per second per API token."),
    ("burst", "Requests a token may make at once above its rate (default: the rate)."),
)
OPTION_LIMITS = {
    "hubs": plan_service.HUBS,
    "spaces": plan_service.SPACES,
    "store_bytes": plan_service.STORE,
    "rate": plan_service.RATE,
    "burst": plan_service.BURST,
}


def plan_values(options: dict[str, str | None]) -> dict[str, object]:
    return {OPTION_LIMITS[k]: v for k, v in options.items() if v is not None}


@plan.command("create")
@click.argument("name")
@limit_options
@click.pass_context
def plan_create(ctx: click.Context, /, name: str, **options: str | None) -> None:
    """Create a plan; limits not given are unlimited. Prints it as JSON."""

    async def work(_svc: Services, s: AsyncSession) -> dict[str, object]:
        values = plan_service.parse_values(
            plan_values(options), tuple(plan_service.COLUMNS), text=True
        )
        return (await plan_service.create_plan(s, name, values)).as_json()

    click.echo(json.dumps(run_db(settings_of(ctx), work)))


@plan.command("set")
@click.argument("name")
@limit_options
@click.pass_context
def plan_set(ctx: click.Context, /, name: str, **options: str | None) -> None:
    """Change the limits given, keep the others. Prints the plan as JSON."""
    raw = plan_values(options)
    if not raw:
        raise click.UsageError("give at least one limit to change")

    async def work(_svc: Services, s: AsyncSession) -> dict[str, object]:
        values = plan_service.parse_values(raw, tuple(plan_service.COLUMNS), text=True)
        return (await plan_service.update_plan(s, name, values)).as_json()

    click.echo(json.dumps(run_db(settings_of(ctx), work)))


@plan.command("list")
@click.pass_context
def plan_list(ctx: click.Context) -> None:
    """Every plan as JSON lines (null: unlimited)."""

    async def work(_svc: Services, s: AsyncSession) -> list[dict[str, object]]:
        return [p.as_json() for p in await plan_service.list_plans(s)]

    for row in run_db(settings_of(ctx), work):
        click.echo(json.dumps(row))


@click.group("token")
def token() -> None:
    """User API tokens (shown once)."""


@token.command("create")
@click.option("--org", "org_id", required=True, help="Organization the token acts for.")
@click.option("--admin", is_flag=True, help="May see and manage every organization.")
@click.option("--name", default="", help="A note to recognise the token by.")
@click.pass_context
def token_create(ctx: click.Context, org_id: str, admin: bool, name: str) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    made = run_db(
        settings_of(ctx),
        lambda _svc, s: TokenService.create(s, org_id, name=name, admin=admin),
    )
    click.echo(f"token id: {made.token_id}", err=True)
    click.echo(made.token)


@token.command("revoke")
@click.argument("token_id")
@click.pass_context
def token_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token by its id (tok_...)."""
    run_db(settings_of(ctx), lambda _svc, s: TokenService.revoke(s, token_id))
    click.echo(f"revoked {token_id}")


@click.group("access-key")
def access_key() -> None:
    """Access keys that let self-hosted Hubs join a Space (max 5 live per Space)."""


@access_key.command("create")
@click.option("--space", "space_id", required=True, help="Space id.")
@click.option("--description", default="", help="What the key is for.")
@click.option(
    "--platform-api",
    "platform_api",
    default=None,
    help="This manager's URL as Hubs reach it, for the printed Hub command "
    "(default: MANAGER_PUBLIC_URL, else http://MANAGER_HOST:MANAGER_PORT).",
)
@click.pass_context
def key_create(
    ctx: click.Context, space_id: str, description: str, platform_api: str | None
) -> None:
    """Create a key; it is printed once, with the Hub command line that uses it."""
    settings = settings_of(ctx)
    url = (platform_api or settings.effective_public_url).rstrip("/")

    async def work(svc: Services, s: AsyncSession) -> tuple[str, str]:
        row = await repo.get_space(s, space_id)
        if row is None:
            raise click.ClickException(f"Space {space_id} not found")
        made = await svc.keys.create(s, space_id, description, "cli")
        return made.key, row.org_id

    key, org_id = run_db(settings, work)
    click.echo(key)
    click.echo(
        "\nStart a Hub in this Space with:\n"
        f"  scramjet-transform-hub --platform-api {url} "
        f'--platform-space {org_id}:{space_id} --platform-api-key "{key}" --id NAME',
        err=True,
    )


@access_key.command("list")
@click.option("--space", "space_id", required=True, help="Space id.")
@click.pass_context
def key_list(ctx: click.Context, space_id: str) -> None:
    """List live keys: created id and description, never the key."""

    async def work(svc: Services, s: AsyncSession) -> list[dict[str, object]]:
        return await svc.keys.list_keys(s, space_id)

    for row in run_db(settings_of(ctx), work):
        click.echo(json.dumps(row))


@access_key.command("revoke")
@click.option("--space", "space_id", required=True, help="Space id.")
@click.option("--all", "revoke_all", is_flag=True, help="Revoke every key of the Space.")
@click.argument("ident", required=False)
@click.pass_context
def key_revoke(ctx: click.Context, space_id: str, revoke_all: bool, ident: str | None) -> None:
    """Revoke a key by its created id (or the key itself), or all with --all.

    Hubs connected to a running manager with a revoked key are dropped by the manager
    the next time it checks (immediately when revoked through the API)."""
    if not revoke_all and not ident:
        raise click.UsageError("name a key (its created id) or pass --all")

    async def work(svc: Services, s: AsyncSession) -> int:
        if revoke_all:
            return len(await svc.keys.revoke_all_rows(s, space_id, "cli"))
        await svc.keys.revoke(s, space_id, ident or "", "cli")
        return 1

    click.echo(f"revoked {run_db(settings_of(ctx), work)} key(s)")
