"""merge age and orders

Revision ID: e9a8c6b4d244
Revises: 7c4e2d8a9b22, c2e4a6b8d055
Create Date: 2026-11-16 09:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "e9a8c6b4d244"
down_revision: Union[str, None] = ("7c4e2d8a9b22", "c2e4a6b8d055")
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index("ix_orders_user_id", "orders", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_orders_user_id", table_name="orders")
