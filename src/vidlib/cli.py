"""The ``vidlib`` command: serve, migrate, users, purge."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from typing import Annotated

import typer

from vidlib.cliutil import settings_or_exit
from vidlib.config import ConfigError, Settings

cli = typer.Typer(
    help="vidlib: a video library service on S3.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
users_cli = typer.Typer(help="Manage users.", no_args_is_help=True)
cli.add_typer(users_cli, name="users")


def _register_subcommands() -> None:
    from vidlib.uploads.commands import uploads_cli

    cli.add_typer(uploads_cli)


_register_subcommands()


def _migrate(settings: Settings) -> None:
    from vidlib.db.migrate import upgrade

    upgrade(settings.resolved_database_url)


@cli.command()
def migrate() -> None:
    """Apply database migrations."""
    settings = settings_or_exit()
    _migrate(settings)
    typer.echo("Database is up to date.")


@cli.command()
def worker() -> None:
    """Run background work: media processing, jobs, the sweeper and maintenance (Redis)."""
    from vidlib.observability.logging import configure_logging
    from vidlib.tasks.runtime import run_worker

    settings = settings_or_exit()
    configure_logging(settings.log_level, json=settings.log_json)
    _migrate(settings)
    run_worker(settings)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Apply migrations, then serve the API."""
    import uvicorn

    from vidlib.observability.logging import configure_logging

    settings = settings_or_exit()
    configure_logging(settings.log_level, json=settings.log_json)
    _migrate(settings)
    # Fail now, with one sentence, rather than at the first request.
    _ = settings.secret_key
    if "public_url" not in settings.model_fields_set:
        # Local-store URLs must point where this server actually listens.
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        os.environ["VIDLIB_PUBLIC_URL"] = f"http://{shown}:{port}"
    uvicorn.run(
        "vidlib.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        proxy_headers=True,
        server_header=False,
    )


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``45m`` or ``90s`` as a duration."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise typer.BadParameter("use a number followed by d, h, m or s, e.g. 30d")
    return timedelta(seconds=int(text[:-1]) * units[text[-1]])


@cli.command()
def purge(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Retention, e.g. 30d, 12h.")
    ] = "30d",
) -> None:
    """Delete soft-deleted videos past retention for good (objects, then rows)."""
    from vidlib.db.session import create_engine, create_sessionmaker
    from vidlib.storage import open_store
    from vidlib.videos.service import purge_deleted

    age = parse_age(older_than)
    settings = settings_or_exit()
    _migrate(settings)

    async def run() -> int:
        engine = create_engine(settings.resolved_database_url)
        store = await open_store(settings)
        try:
            return await purge_deleted(create_sessionmaker(engine), store, older_than=age)
        finally:
            await store.close()
            await engine.dispose()

    typer.echo(f"Purged {asyncio.run(run())} video(s) deleted more than {older_than} ago.")


@users_cli.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="The new user's email.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, confirmation_prompt=True, help="At least 8 characters."
        ),
    ],
) -> None:
    """Create a user."""
    from pydantic import ValidationError

    from vidlib.auth import service
    from vidlib.auth.schemas import Credentials
    from vidlib.db.session import create_engine, create_sessionmaker
    from vidlib.errors import AppError

    settings = settings_or_exit()
    try:
        creds = Credentials(email=email, password=password)
    except ValidationError as exc:
        typer.echo(f"Invalid input: {exc.errors()[0]['msg']}.", err=True)
        raise typer.Exit(2) from exc
    _migrate(settings)

    async def run() -> str:
        engine = create_engine(settings.resolved_database_url)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                user = await service.register(session, email=creds.email, password=creds.password)
                return str(user.id)
        finally:
            await engine.dispose()

    try:
        user_id = asyncio.run(run())
    except AppError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Created user {creds.email} ({user_id}).")


def main() -> None:
    """Entry point of the ``vidlib`` script."""
    try:
        cli()
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        sys.exit(2)
