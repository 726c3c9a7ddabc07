"""Announce every change to a user row on a PostgreSQL channel, at commit.

API processes keep callers' account snapshots in memory and drop one the moment its
row changes; the trigger covers every writer (API, workers, CLI, manual SQL), and
NOTIFY is transactional, so a rolled-back change announces nothing.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Keep in step with vidlib.auth.accounts.CHANNEL.
CHANNEL = "vidlib_user_changed"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION vidlib_notify_user_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                PERFORM pg_notify('{CHANNEL}', '*');
            ELSE
                PERFORM pg_notify('{CHANNEL}', OLD.id::text);
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER users_notify_changed
        AFTER UPDATE OR DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION vidlib_notify_user_changed()
        """
    )
    # TRUNCATE fires no row triggers: announce it as "every user".
    op.execute(
        """
        CREATE TRIGGER users_notify_truncated
        AFTER TRUNCATE ON users
        FOR EACH STATEMENT EXECUTE FUNCTION vidlib_notify_user_changed()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS users_notify_truncated ON users")
    op.execute("DROP TRIGGER IF EXISTS users_notify_changed ON users")
    op.execute("DROP FUNCTION IF EXISTS vidlib_notify_user_changed()")
