"""``vidlib reconcile`` and ``vidlib import-s3``: operator commands on stored uploads.

``uploads_cli`` is a Typer app whose commands are meant to be merged into the main
``vidlib`` command (``cli.add_typer(uploads_cli)``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, TypeVar

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vidlib.cliutil import settings_or_exit
from vidlib.config import Settings
from vidlib.db.session import create_engine, create_sessionmaker
from vidlib.storage import open_store
from vidlib.storage.base import ObjectStore
from vidlib.tasks.ingest import IngestQueue
from vidlib.uploads.maintenance import (
    ImportReport,
    ReconcileReport,
    UnknownUser,
    import_objects,
    reconcile,
)
from vidlib.uploads.names import KEY_ROOT

uploads_cli = typer.Typer(no_args_is_help=True)

T = TypeVar("T")
Work = Callable[[async_sessionmaker[AsyncSession], ObjectStore, IngestQueue | None], Awaitable[T]]


async def _with_resources(settings: Settings, work: Work[T]) -> T:
    """Run ``work(sessionmaker, store, ingest)`` with the database and store open."""
    from vidlib.tasks.runtime import open_ingest_queue

    engine = create_engine(settings.resolved_database_url)
    store: ObjectStore = await open_store(settings)
    try:
        async with open_ingest_queue(settings) as ingest:
            return await work(create_sessionmaker(engine), store, ingest)
    finally:
        await store.close()
        await engine.dispose()


def _print_reconcile(report: ReconcileReport) -> None:
    verb = "removed" if report.fixed else "found"
    for key in report.orphan_objects:
        typer.echo(f"orphan object ({verb}): {key}")
    for video_id, key in report.missing_objects:
        typer.echo(f"missing object of live video {video_id}: {key}")
    for key, upload_id in report.stale_multipart:
        typer.echo(f"stale multipart upload ({'aborted' if report.fixed else 'found'}): {key}")
        typer.echo(f"  upload id {upload_id}")
    for session_id in report.expired_sessions:
        state = "marked expired" if report.fixed else "past expiry"
        typer.echo(f"upload session {session_id}: {state}")
    typer.echo(
        f"{len(report.orphan_objects)} orphan objects, "
        f"{len(report.missing_objects)} videos missing their object, "
        f"{len(report.stale_multipart)} stale multipart uploads, "
        f"{len(report.expired_sessions)} expired upload sessions."
    )
    if not report.fixed and not report.clean:
        typer.echo("Run again with --fix to repair (missing objects are only reported).")


@uploads_cli.command("reconcile")
def reconcile_command(
    fix: Annotated[
        bool, typer.Option("--fix", help="Delete orphans, abort stale uploads, expire sessions.")
    ] = False,
    orphan_grace_minutes: Annotated[
        int, typer.Option(min=0, help="Leave objects younger than this alone.")
    ] = 60,
    multipart_grace_hours: Annotated[
        int, typer.Option(min=0, help="Leave unowned multipart uploads younger than this.")
    ] = 24,
) -> None:
    """Compare storage under uploads/users/ with the database, and repair with --fix."""
    settings = settings_or_exit()

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        _ingest: IngestQueue | None,
    ) -> ReconcileReport:
        return await reconcile(
            sessionmaker,
            store,
            fix=fix,
            orphan_grace=timedelta(minutes=orphan_grace_minutes),
            multipart_grace=timedelta(hours=multipart_grace_hours),
        )

    report = asyncio.run(_with_resources(settings, work))
    _print_reconcile(report)
    if report.missing_objects:
        raise typer.Exit(1)


@uploads_cli.command("import-s3")
def import_s3_command(
    prefix: Annotated[str, typer.Option(help="Import objects under this key prefix.")] = KEY_ROOT,
    user: Annotated[
        str | None,
        typer.Option(help="Give every object to this user (email) instead of the key's owner."),
    ] = None,
) -> None:
    """Register videos already in storage (skips keys already registered) and queue them."""
    settings = settings_or_exit()

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        ingest: IngestQueue | None,
    ) -> ImportReport:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.completed} objects checked"),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            transient=True,
        ) as bar:
            task = bar.add_task("", total=None)

            def step(key: str) -> None:
                bar.update(task, advance=1, description=key[-60:])

            return await import_objects(
                sessionmaker,
                store,
                prefix=prefix,
                user_email=user,
                ingest=ingest,
                progress=step,
            )

    try:
        report = asyncio.run(_with_resources(settings, work))
    except UnknownUser as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    for key, reason in report.skipped:
        typer.echo(f"skipped {key}: {reason}")
    typer.echo(
        f"{len(report.created)} videos imported, {report.already_registered} already "
        f"registered, {len(report.skipped)} skipped."
    )
