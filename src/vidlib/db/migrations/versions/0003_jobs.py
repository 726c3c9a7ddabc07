"""Jobs, and the processing bookkeeping of videos being ingested.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
# 0003 (idempotency keys) landed first on top of 0001; chaining after it keeps one head.
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UNFINISHED = sa.text("status IN ('queued', 'running')")
PROCESSING = sa.text("status = 'processing'")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("video_id", sa.Uuid(), nullable=False),
        sa.Column("upload_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("title", sa.String(255), nullable=True),
        sa.Column("options", JSON, nullable=False),
        sa.Column("transcript_source", sa.String(16), nullable=True),
        sa.Column("transcript_id", sa.Uuid(), nullable=True),
        sa.Column("transcript_text", sa.Text(), nullable=True),
        sa.Column("transcript_format", sa.String(8), nullable=True),
        sa.Column("transcript_characters", sa.Integer(), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error", sa.String(1000), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("enqueued_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name=op.f("fk_jobs_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["video_id"], ["videos.id"], ondelete="CASCADE", name=op.f("fk_jobs_video_id_videos")
        ),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["uploads.id"],
            ondelete="SET NULL",
            name=op.f("fk_jobs_upload_id_uploads"),
        ),
        sa.ForeignKeyConstraint(
            ["transcript_id"],
            ["transcripts.id"],
            ondelete="SET NULL",
            name=op.f("fk_jobs_transcript_id_transcripts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_user_created", "jobs", ["user_id", "created_at", "id"])
    op.create_index(
        "ix_jobs_user_status_created", "jobs", ["user_id", "status", "created_at", "id"]
    )
    op.create_index("ix_jobs_video_id", "jobs", ["video_id"])
    op.create_index(
        "ix_jobs_unfinished",
        "jobs",
        ["status", "created_at"],
        sqlite_where=UNFINISHED,
        postgresql_where=UNFINISHED,
    )

    op.create_table(
        "video_ingest",
        sa.Column("video_id", sa.Uuid(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("enqueued_at", TS, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["video_id"],
            ["videos.id"],
            ondelete="CASCADE",
            name=op.f("fk_video_ingest_video_id_videos"),
        ),
        sa.PrimaryKeyConstraint("video_id", name=op.f("pk_video_ingest")),
    )
    # The sweeper's scan of videos still processing: only those rows are indexed.
    op.create_index(
        "ix_videos_processing",
        "videos",
        ["created_at"],
        sqlite_where=PROCESSING,
        postgresql_where=PROCESSING,
    )


def downgrade() -> None:
    op.drop_index("ix_videos_processing", table_name="videos")
    op.drop_table("video_ingest")
    op.drop_table("jobs")
