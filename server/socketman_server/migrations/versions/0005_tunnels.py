"""tunnels (issue 22, PROTOCOL 11): one row per tunnel an operator asked
for (who, device, port, when opened and closed, bytes each way, outcome).
Nothing else is touched.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('tunnels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tunnel_id', sa.String(length=64), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('mac', sa.String(length=17), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('operator', sa.String(length=64), server_default='', nullable=False),
    sa.Column('via', sa.String(length=120), server_default='', nullable=False),
    sa.Column('address', sa.String(length=64), server_default='', nullable=False),
    sa.Column('server', sa.String(length=100), server_default='', nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('opened_at', sa.BigInteger(), nullable=False),
    sa.Column('connected_at', sa.BigInteger(), nullable=True),
    sa.Column('closed_at', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.Column('bytes_to_device', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('bytes_from_device', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('outcome', sa.String(length=40), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('close_requested_at', sa.BigInteger(), nullable=True),
    sa.Column('close_requested_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tunnel_id')
    )
    with op.batch_alter_table('tunnels', schema=None) as batch_op:
        batch_op.create_index('ix_tunnels_device', ['device_id', 'id'], unique=False)
        batch_op.create_index('ix_tunnels_state', ['state', 'updated_at'], unique=False)



def downgrade():
    with op.batch_alter_table('tunnels', schema=None) as batch_op:
        batch_op.drop_index('ix_tunnels_state')
        batch_op.drop_index('ix_tunnels_device')

    op.drop_table('tunnels')
