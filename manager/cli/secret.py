"""`space-manager secret rotate`: a new server secret, which invalidates every access key."""

from __future__ import annotations

import asyncio

import click
from sqlalchemy import update

from manager.common import now_ms
from manager.config import Settings
from manager.db.models import AccessKey
from manager.services.context import Services
from manager.services.server_secret import rotate_secret


@click.group("secret")
def secret() -> None:
    """The server secret that access keys are derived from."""


@secret.command("rotate")
@click.option("--yes", is_flag=True, help="Do it without asking.")
@click.pass_context
def rotate(ctx: click.Context, yes: bool) -> None:
    """Generate a new server secret and revoke every access key (they cannot be checked
    against the new secret). Restart running managers afterwards; Hubs then need new keys."""
    settings: Settings = ctx.obj
    if settings.secret:
        raise click.ClickException(
            "the secret comes from MANAGER_SECRET: set a new value there, then revoke all keys "
            "(space-manager access-key revoke --space S --all) and restart"
        )
    if not yes:
        click.confirm("Every access key of every Space will stop working. Continue?", abort=True)

    async def revoke_all() -> int:
        svc = Services.build(settings)
        try:
            async with svc.sessions() as s, s.begin():
                result = await s.execute(
                    update(AccessKey)
                    .where(AccessKey.revoked_ms.is_(None))
                    .values(revoked_ms=now_ms())
                )
                return int(getattr(result, "rowcount", 0) or 0)
        finally:
            await svc.aclose()

    revoked = asyncio.run(revoke_all())
    rotate_secret(settings.data_dir)
    click.echo(
        f"New server secret written to {settings.data_dir}/server-secret; {revoked} access "
        "keys revoked. Restart the manager, create new keys and restart your Hubs with them."
    )
