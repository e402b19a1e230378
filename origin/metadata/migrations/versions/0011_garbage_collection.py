"""garbage collection: when blobs and links were last made reachable, and blob tombstones

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(
            sa.Column(
                "touched_at",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.func.now(),
            )
        )
        batch.add_column(sa.Column("tombstoned_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_blobs_tombstoned_at", ["tombstoned_at"])
    with op.batch_alter_table("repository_blobs") as batch:
        batch.add_column(
            sa.Column(
                "touched_at",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.func.now(),
            )
        )
    op.create_index("ix_repository_blobs_digest", "repository_blobs", ["digest"])
    op.create_index("ix_manifest_references_digest", "manifest_references", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_manifest_references_digest", "manifest_references")
    op.drop_index("ix_repository_blobs_digest", "repository_blobs")
    with op.batch_alter_table("repository_blobs") as batch:
        batch.drop_column("touched_at")
    with op.batch_alter_table("blobs") as batch:
        batch.drop_index("ix_blobs_tombstoned_at")
        batch.drop_column("tombstoned_at")
        batch.drop_column("touched_at")
