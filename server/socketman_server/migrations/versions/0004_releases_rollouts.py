"""releases of the agent, rollouts and their devices (issue 23, PROTOCOL 10);
devices.version and version_at (from CONNECT). Devices, their history and
the operators' tables are not touched. (Named for what it adds: another
branch may also add a 0004; the one who merges renumbers.)

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('releases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=50), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('form', sa.String(length=40), nullable=False),
    sa.Column('files', sa.Integer(), nullable=False),
    sa.Column('filename', sa.String(length=200), server_default='', nullable=False),
    sa.Column('uploaded_by', sa.String(length=64), server_default='', nullable=False),
    sa.Column('uploaded_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('version')
    )
    op.create_table('rollouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=64), server_default='', nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), server_default='', nullable=False),
    sa.Column('wave_spec', sa.String(length=200), nullable=False),
    sa.Column('threshold_spec', sa.String(length=200), nullable=False),
    sa.Column('waves', sa.Text(), nullable=False),
    sa.Column('allowed', sa.Text(), nullable=False),
    sa.Column('trial_s', sa.Integer(), nullable=False),
    sa.Column('margin_s', sa.Integer(), nullable=False),
    sa.Column('offline_wait_s', sa.Integer(), nullable=False),
    sa.Column('wave', sa.Integer(), nullable=False),
    sa.Column('wave_started_at', sa.BigInteger(), nullable=True),
    sa.Column('accepted_wave', sa.Integer(), server_default='0', nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.Column('finished_at', sa.BigInteger(), nullable=True),
    sa.Column('lease_owner', sa.String(length=100), nullable=True),
    sa.Column('lease_until', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('rollouts', schema=None) as batch_op:
        batch_op.create_index('ix_rollouts_state', ['state'], unique=False)

    op.create_table('rollout_devices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rollout_id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('wave', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('sent_at', sa.BigInteger(), nullable=True),
    sa.Column('finished_at', sa.BigInteger(), nullable=True),
    sa.Column('old_version', sa.String(length=50), nullable=True),
    sa.Column('new_version', sa.String(length=50), nullable=True),
    sa.Column('reason', sa.Text(), server_default='', nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rollout_id'], ['rollouts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('rollout_id', 'device_id')
    )
    with op.batch_alter_table('rollout_devices', schema=None) as batch_op:
        batch_op.create_index('ix_rollout_devices_device', ['device_id'], unique=False)
        batch_op.create_index('ix_rollout_devices_state', ['rollout_id', 'state'], unique=False)

    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('version_at', sa.BigInteger(), nullable=True))



def downgrade():
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('version_at')
        batch_op.drop_column('version')

    with op.batch_alter_table('rollout_devices', schema=None) as batch_op:
        batch_op.drop_index('ix_rollout_devices_state')
        batch_op.drop_index('ix_rollout_devices_device')

    op.drop_table('rollout_devices')
    with op.batch_alter_table('rollouts', schema=None) as batch_op:
        batch_op.drop_index('ix_rollouts_state')

    op.drop_table('rollouts')
    op.drop_table('releases')
