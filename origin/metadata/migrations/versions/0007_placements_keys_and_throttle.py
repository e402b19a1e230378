"""storage placements, shared signing keys and login throttle

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_NOW = sa.text("(CURRENT_TIMESTAMP)")


def upgrade() -> None:
    op.create_table(
        "blob_placements",
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["digest"],
            ["blobs.digest"],
            name=op.f("fk_blob_placements_digest_blobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("digest", "location", name=op.f("pk_blob_placements")),
    )
    op.create_table(
        "placement_queue",
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.Column("error", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["digest"],
            ["blobs.digest"],
            name=op.f("fk_placement_queue_digest_blobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("digest", "location", name=op.f("pk_placement_queue")),
    )
    op.create_index("ix_placement_queue_due", "placement_queue", ["due_at"])
    op.create_table(
        "namespace_locations",
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "location", name=op.f("pk_namespace_locations")),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("pem", sa.LargeBinary(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index("ix_login_failures_subject", "login_failures", ["subject", "at"])


def downgrade() -> None:
    op.drop_table("login_failures")
    op.drop_table("signing_keys")
    op.drop_table("namespace_locations")
    op.drop_index("ix_placement_queue_due", "placement_queue")
    op.drop_table("placement_queue")
    op.drop_table("blob_placements")
