"""tag history (the time machine), namespace settings, immutable tags

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tag_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("manifest_digest", sa.String(length=160), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_tag_history_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tag_history")),
    )
    op.create_index("ix_tag_history_tag", "tag_history", ["repository_id", "tag", "started_at"])
    op.create_table(
        "namespace_settings",
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("time_machine_seconds", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("namespace", name=op.f("pk_namespace_settings")),
    )
    op.create_table(
        "immutable_tags",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=True),
        sa.Column("pattern", sa.String(length=128), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_immutable_tags")),
    )
    op.create_index("ix_immutable_tags_namespace", "immutable_tags", ["namespace"])
    # Every tag that exists starts its history where it is now.
    op.execute(
        "INSERT INTO tag_history (repository_id, tag, manifest_digest, started_at) "
        "SELECT repository_id, name, manifest_digest, updated_at FROM tags"
    )


def downgrade() -> None:
    op.drop_index("ix_immutable_tags_namespace", "immutable_tags")
    op.drop_table("immutable_tags")
    op.drop_table("namespace_settings")
    op.drop_index("ix_tag_history_tag", "tag_history")
    op.drop_table("tag_history")
