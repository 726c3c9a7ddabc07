"""What every ``vidlib`` subcommand shares."""

from __future__ import annotations

import typer

from vidlib.config import ConfigError, Settings, load_settings


def settings_or_exit() -> Settings:
    """The settings, or the configuration error as one sentence and exit status 2."""
    try:
        return load_settings()
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
