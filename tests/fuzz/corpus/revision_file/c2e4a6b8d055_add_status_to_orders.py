"""add status to orders

Revision ID: c2e4a6b8d055
Revises: b5d1e7f3a033
Create Date: 2026-11-12 09:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = "c2e4a6b8d055"
down_revision: Union[str, None] = "b5d1e7f3a033"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("status", sa.String(length=20), nullable=False,
                                      server_default="new"))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("status")
