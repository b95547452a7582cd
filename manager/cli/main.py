"""The `space-manager` command: serve, migrate, and the operator's admin commands."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
from pathlib import Path

import click

from manager import __version__, logs
from manager.cli.admin import access_key, org, plan, run_db, space, token
from manager.cli.connect import connect
from manager.cli.secret import secret
from manager.config import Settings
from manager.db import migrate
from manager.services.spaces import Bootstrap, bootstrap_if_empty
from manager.web.server import event_loop_factory, limit_malloc_arenas, run_server
from manager.web.workers import check_workers, run_workers


@click.group()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the SQLite database and the generated server secret live "
    "(env MANAGER_DATA_DIR, default ./data).",
)
@click.version_option(__version__, prog_name="space-manager")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None) -> None:
    """Space manager: the control plane self-hosted Scramjet Transform Hubs join.

    The database is SQLite under the data dir unless MANAGER_DATABASE_URL names another
    (PostgreSQL: postgresql://user:pass@host/db)."""
    ctx.obj = Settings.from_env().with_overrides(data_dir=data_dir)


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply all migrations (safe to run again)."""
    settings: Settings = ctx.obj
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url)
    click.echo("database is up to date", err=True)


@cli.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port for API and tunnels (default 9000).")
@click.option("--public-url", default=None, help="URL Hubs and clients use to reach us.")
@click.option("--log-level", default=None, help="debug, info, warning or error.")
@click.option(
    "--tunnel-port",
    type=int,
    default=None,
    help="Also accept Hub tunnels on this port (they always work on --port).",
)
@click.option(
    "--ssl-certfile", default=None, help="PEM certificate: serve HTTPS (API and tunnels)."
)
@click.option("--ssl-keyfile", default=None, help="PEM private key for --ssl-certfile.")
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Processes sharing the port as replicas of each other (default 1; >1 needs PostgreSQL).",
)
@click.option(
    "--no-bootstrap",
    is_flag=True,
    help="Never create the first organization and admin token here, even on an empty database "
    "(replicas: one `space-manager bootstrap` does it).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    public_url: str | None,
    log_level: str | None,
    tunnel_port: int | None,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    workers: int | None,
    no_bootstrap: bool,
) -> None:
    """Migrate the database and serve the API and Hub tunnels on one port."""
    settings: Settings = ctx.obj
    settings = settings.with_overrides(
        host=host,
        port=port,
        public_url=public_url,
        log_level=log_level,
        tunnel_port=tunnel_port,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    workers = workers or int(os.environ.get("MANAGER_WORKERS", "1") or 1)
    check_workers(settings, workers)
    limit_malloc_arenas()  # before any thread starts
    configure_logging(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url)
    if not no_bootstrap:
        made = run_db(settings, lambda _svc, s: bootstrap_if_empty(s))
        if made is not None:
            announce_bootstrap(made, settings)
    if workers > 1:
        sys.exit(run_workers(settings, workers))
    with asyncio.Runner(loop_factory=event_loop_factory(settings.loop)) as runner:
        runner.run(run_server(settings))


@cli.command()
@click.pass_context
def bootstrap(ctx: click.Context) -> None:
    """Migrate the database and, if it has no organization yet, create the default
    organization, its Space and an admin API token, and print them once (what `serve` does
    on its first start). With several replicas run this once, before them, and start them
    with `serve --no-bootstrap`, so exactly one process creates and prints the token."""
    settings: Settings = ctx.obj
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url)
    made = run_db(settings, lambda _svc, s: bootstrap_if_empty(s))
    if made is None:
        click.echo("the database already has an organization; nothing created", err=True)
    else:
        announce_bootstrap(made, settings)


def announce_bootstrap(made: Bootstrap, settings: Settings) -> None:
    """Print, once, what a newcomer needs: the admin token, si's profile, how to join a Hub."""
    url = settings.effective_public_url
    profile = {"middlewareApiUrl": f"{url}/api/v1", "env": "production", "token": made.token.token}
    key_command = shlex.join(
        [
            own_command(),
            "--data-dir",
            str(settings.data_dir),
            "access-key",
            "create",
            "--space",
            made.space.id,
            "--description",
            "my hub",
            # The server's URL (its --port may not be the default the command would assume).
            "--platform-api",
            url,
        ]
    )
    click.echo(
        "\nFirst start: created organization "
        f"{made.org.id}, Space {made.space.id} and an admin API token.\n"
        "The token is shown only this once; keep it:\n\n"
        f"  {made.token.token}\n\n"
        f"Sign in to the Panel with it: {url}/panel/\n\n"
        "Point si at this manager:\n\n"
        f"  si config set json '{json.dumps(profile, separators=(',', ':'))}'\n"
        "  si config set log --format json\n\n"
        "Join a Hub to the Space: make an access key (printed once) ...\n\n"
        f"  {key_command}\n\n"
        "... and start the Hub with it:\n\n"
        f"  scramjet-transform-hub --platform-api {url} "
        f"--platform-space {made.org.id}:{made.space.id} --platform-api-key KEY\n"
    )


def own_command() -> str:
    """How this process was started (`.venv/bin/space-manager` under `make run`), so the
    printed commands run as they are; plain `space-manager` when started some other way."""
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if Path(argv0).name == "space-manager" else "space-manager"


def configure_logging(settings: Settings) -> None:
    """The one place the server's logging is set up (format, level, replica id)."""
    logs.configure(settings.log_level, settings.log_format, settings.replica)


cli.add_command(org)
cli.add_command(space)
cli.add_command(token)
cli.add_command(access_key)
cli.add_command(plan)
cli.add_command(secret)
cli.add_command(connect)
