"""fleet scale (issue 25): samples get the document's `seq` and the time the
server stored it (`received_at`), and a unique index on (device_id, ts,
seq) that replaces ix_samples_device_ts (the charts' index) and keeps a
document that is uploaded twice from being stored twice; devices get
`online_ts`, the device's own timestamp of the CONNECT that set `online`
(an older one arriving later does not undo it). Existing rows keep
NULL in the new columns: NULL seqs never collide.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('online_ts', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('samples', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('received_at', sa.BigInteger(), nullable=True))
        batch_op.drop_index('ix_samples_device_ts')
        batch_op.create_index('ux_samples_device_ts_seq', ['device_id', 'ts', 'seq'], unique=True)


def downgrade():
    with op.batch_alter_table('samples', schema=None) as batch_op:
        batch_op.drop_index('ux_samples_device_ts_seq')
        batch_op.create_index('ix_samples_device_ts', ['device_id', 'ts'], unique=False)
        batch_op.drop_column('received_at')
        batch_op.drop_column('seq')
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('online_ts')
