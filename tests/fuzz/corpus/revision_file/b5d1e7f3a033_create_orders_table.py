"""create orders table

Starts the `orders` branch: orders belong to users.

Revision ID: b5d1e7f3a033
Revises: 3f2a1b9c0d11
Create Date: 2026-11-10 09:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "b5d1e7f3a033"
down_revision: Union[str, None] = "3f2a1b9c0d11"
branch_labels: Union[str, Sequence[str], None] = ("orders",)
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("total_cents", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("orders")
