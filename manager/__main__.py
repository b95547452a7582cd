"""`python -m manager`: the `space-manager` command (how `serve --workers` starts workers)."""

from manager.cli.main import cli

cli()
