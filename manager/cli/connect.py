"""`space-manager connect`: the WebSocket Hub connector as a command (manager/connector).

Thin: parse and check the options, configure logging, run `Connector` until it stops, and
turn the outcome into an exit code (0 after SIGINT/SIGTERM, 3 when the manager refused or
dropped us for good, 2 for bad options).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import click

from manager.connector import Connector, ConnectorOptions, HubAddress, UsageError
from manager.connector.options import parse_space, parse_tags

EXIT_STOPPED = 3


@click.command("connect")
@click.option(
    "--hub",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The local Hub's API address (http only). The Hub must not be joined to a platform "
    "itself; requests the manager sends to this Hub are forwarded here over TCP.",
)
@click.option(
    "--platform-api",
    required=True,
    help="The Space manager's URL, e.g. https://manager.example.com[/prefix]. http:// becomes "
    "a ws:// tunnel and https:// a wss:// one, to <URL>/api/v1/<org>/<space>/.",
)
@click.option(
    "--platform-space",
    required=True,
    help="ORG:SPACE to join (as a Hub's --platform-space); a bare Space id implies its org.",
)
@click.option(
    "--platform-api-key",
    required=True,
    envvar="PLATFORM_API_KEY",
    show_envvar=True,
    help="The Space's access key. Sent only as a Digest proof (like a Hub), never logged; "
    "prefer the environment variable so it stays out of `ps`.",
)
@click.option(
    "--id",
    "hub_id",
    default="",
    help="Hub id to join as. Without it the manager assigns one, which is kept for the "
    "reconnects of this process.",
)
@click.option("--description", default="", help="Hub description shown in the Space.")
@click.option("--tags", default=None, help="Comma-separated Hub tags, e.g. gpu,edge.")
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM CA bundle to trust for an https:// manager (replaces the system store).",
)
@click.option(
    "--load-interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between LOAD reports (read from the Hub's /api/v1/load-check). The manager "
    "shows a Hub unhealthy when LOAD stops, e.g. while the local Hub is down.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between polls of the Hub's /sequences, /instances and /topics; changes are "
    "reported to the manager as events.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="Log verbosity (stderr).",
)
def connect(
    hub: str,
    platform_api: str,
    platform_space: str,
    platform_api_key: str,
    hub_id: str,
    description: str,
    tags: str | None,
    ca_file: str | None,
    load_interval: float,
    poll_interval: float,
    log_level: str,
) -> None:
    """Join a local Hub to a Space through a WebSocket tunnel.

    Runs beside a Hub that is not joined to any platform and makes it a full member of the
    Space: the manager lists it with its load, Sequences, instances and topics, and proxies
    API calls to it. A WebSocket passes L7 reverse proxies (nginx, cloud load balancers) that
    refuse the CONNECT a Hub uses itself. HTTPS_PROXY (wss://) or HTTP_PROXY (ws://) is used
    unless NO_PROXY names the manager's host.

    Reconnects with exponential back-off and full jitter (1 s doubling to 60 s). Exits 3 when
    the manager refuses the key, revokes it, already has this id, or is at its Hub limit.
    """
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("websockets", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    try:
        org, space = parse_space(platform_space)
        options = ConnectorOptions(
            hub=HubAddress.parse(hub),
            platform_api=platform_api,
            org=org,
            space=space,
            key=platform_api_key.strip(),
            hub_id=hub_id.strip(),
            description=description,
            tags=parse_tags(tags),
            ca_file=ca_file,
            load_interval=load_interval,
            poll_interval=poll_interval,
        )
        _check_headers(options)
        connector = Connector(options)  # builds the URL, TLS context and proxy choice
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    reason = asyncio.run(_run(connector))
    if reason is not None:
        sys.exit(EXIT_STOPPED)


async def _run(connector: Connector) -> str | None:
    """The connector until it stops (its reason) or a signal arrives (None)."""
    task = asyncio.ensure_future(connector.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        logging.getLogger("manager.connector").info("stopped (signal)")
        return None


def _check_headers(options: ConnectorOptions) -> None:
    """Header values travel as Latin-1; refuse what cannot (a Hub would just never connect)."""
    for name, value in (("--description", options.description), ("--tags", ",".join(options.tags))):
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise UsageError(
                f"{name} must be Latin-1 text (it travels in an HTTP header)"
            ) from None
        if any(ch in value for ch in "\r\n"):
            raise UsageError(f"{name} must be one line")
