"""emails, team sync groups and refresh tokens

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(length=255), nullable=True))
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_group", sa.String(length=255), nullable=True))
    with op.batch_alter_table("app_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), server_default="app", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("app_tokens", schema=None) as batch_op:
        batch_op.drop_column("kind")
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_column("external_group")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("email")
