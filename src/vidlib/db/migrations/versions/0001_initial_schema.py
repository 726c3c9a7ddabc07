"""Initial schema: users, refresh tokens, videos, uploads, transcripts.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
LIVE = sa.text("deleted_at IS NULL")


def _live_index(
    name: str, *columns: str | sa.TextClause, unique: bool = False, where: sa.TextClause = LIVE
) -> None:
    op.create_index(
        name, "videos", list(columns), unique=unique, sqlite_where=where, postgresql_where=where
    )


def upgrade() -> None:
    is_pg = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("video_count", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("library_version", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            ondelete="CASCADE",
            name=op.f("fk_refresh_tokens_user_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_tokens_token_hash")),
    )
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"])
    op.create_index("ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"])

    op.create_table(
        "videos",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("original_filename", sa.String(255), nullable=False),
        sa.Column("s3_key", sa.String(500), nullable=False),
        sa.Column("s3_url", sa.String(1000), nullable=False),
        sa.Column("s3_bucket", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("duration", sa.Numeric(10, 2), nullable=True),
        sa.Column("thumbnail_s3_key", sa.String(500), nullable=True),
        sa.Column("thumbnail_url", sa.String(1000), nullable=True),
        sa.Column(
            "metadata", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="processing"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("deleted_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name=op.f("fk_videos_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_videos")),
        sa.UniqueConstraint("s3_key", name=op.f("uq_videos_s3_key")),
    )
    # The original design's indexes.
    op.create_index("idx_videos_user_id", "videos", ["user_id"])
    op.create_index("idx_videos_created_at", "videos", [sa.text("created_at DESC")])
    op.create_index("idx_videos_filename", "videos", ["filename"])
    op.create_index("idx_videos_s3_key", "videos", ["s3_key"])
    # Keyset pagination: one (user, sort key, id) index per sort field, live rows only.
    _live_index("ix_videos_live_created", "user_id", "created_at", "id")
    _live_index("ix_videos_live_filename", "user_id", sa.text("lower(filename)"), "id")
    _live_index(
        "ix_videos_live_original_filename", "user_id", sa.text("lower(original_filename)"), "id"
    )
    _live_index("ix_videos_live_file_size", "user_id", "file_size", "id")
    _live_index("ix_videos_live_duration", "user_id", sa.text("coalesce(duration, -1)"), "id")
    _live_index(
        "uq_videos_user_sha256_live",
        "user_id",
        "sha256",
        unique=True,
        where=sa.text("deleted_at IS NULL AND sha256 IS NOT NULL"),
    )
    _live_index("ix_videos_deleted_at", "deleted_at", where=sa.text("deleted_at IS NOT NULL"))
    if is_pg:
        # Case-insensitive substring search (ILIKE '%x%') served by trigram indexes that
        # lead with user_id (btree_gin), so a search reads only the caller's matches.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
        op.execute(
            "CREATE INDEX ix_videos_filename_trgm ON videos "
            "USING gin (user_id, filename gin_trgm_ops) WHERE deleted_at IS NULL"
        )
        op.execute(
            "CREATE INDEX ix_videos_original_filename_trgm ON videos "
            "USING gin (user_id, original_filename gin_trgm_ops) WHERE deleted_at IS NULL"
        )

    op.create_table(
        "uploads",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("s3_key", sa.String(500), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("original_filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("part_size", sa.BigInteger(), nullable=True),
        sa.Column("storage_upload_id", sa.String(1024), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("video_id", sa.Uuid(), nullable=True),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name=op.f("fk_uploads_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["video_id"],
            ["videos.id"],
            ondelete="SET NULL",
            name=op.f("fk_uploads_video_id_videos"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
    )
    op.create_index("ix_uploads_user_id_created_at", "uploads", ["user_id", "created_at"])
    op.create_index("ix_uploads_status_expires_at", "uploads", ["status", "expires_at"])
    op.create_index("ix_uploads_video_id", "uploads", ["video_id"])

    op.create_table(
        "transcripts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("original_filename", sa.String(255), nullable=False),
        sa.Column("characters", sa.Integer(), nullable=False),
        sa.Column("cues", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name=op.f("fk_transcripts_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcripts")),
    )
    op.create_index("ix_transcripts_user_id_created_at", "transcripts", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_table("transcripts")
    op.drop_table("uploads")
    op.drop_table("videos")
    op.drop_table("refresh_tokens")
    op.drop_table("users")
