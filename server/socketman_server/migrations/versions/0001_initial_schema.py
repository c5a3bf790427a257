"""initial schema: devices, samples (charts), fleet_jobs, jobs, events

Revision ID: 0001
Revises: (none)
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('devices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mac', sa.String(length=17), nullable=False),
    sa.Column('mac_written', sa.String(length=17), nullable=True),
    sa.Column('name', sa.String(length=200), server_default='', nullable=False),
    sa.Column('token', sa.String(length=64), nullable=True),
    sa.Column('base', sa.String(length=400), nullable=True),
    sa.Column('admitted_at', sa.BigInteger(), nullable=True),
    sa.Column('provisioned_at', sa.BigInteger(), nullable=True),
    sa.Column('first_seen', sa.BigInteger(), nullable=True),
    sa.Column('last_seen', sa.BigInteger(), nullable=True),
    sa.Column('online', sa.Boolean(), nullable=True),
    sa.Column('online_changed_at', sa.BigInteger(), nullable=True),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('firmware', sa.String(length=200), nullable=True),
    sa.Column('agent_version', sa.String(length=50), nullable=True),
    sa.Column('wan_ip', sa.String(length=64), nullable=True),
    sa.Column('stations', sa.Integer(), nullable=True),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('last_doc', sa.Text(), nullable=True),
    sa.Column('last_doc_at', sa.BigInteger(), nullable=True),
    sa.Column('boot_at', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mac'),
    sa.UniqueConstraint('token')
    )
    op.create_table('fleet_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('command', sa.Text(), nullable=False),
    sa.Column('type', sa.String(length=20), nullable=False),
    sa.Column('target', sa.String(length=20), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.Text(), server_default='', nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_device', ['device_id', 'id'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('fleet_job_id', sa.Integer(), nullable=True),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('command', sa.Text(), nullable=False),
    sa.Column('type', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('delivered_at', sa.BigInteger(), nullable=True),
    sa.Column('finished_at', sa.BigInteger(), nullable=True),
    sa.Column('success', sa.Boolean(), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('output', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('via', sa.String(length=10), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['fleet_job_id'], ['fleet_jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_device', ['device_id', 'id'], unique=False)
        batch_op.create_index('ix_jobs_fleet', ['fleet_job_id'], unique=False)

    op.create_table('samples',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.Column('load_1', sa.Float(), nullable=True),
    sa.Column('total_ram', sa.BigInteger(), nullable=True),
    sa.Column('free_ram', sa.BigInteger(), nullable=True),
    sa.Column('rx_bytes', sa.BigInteger(), nullable=True),
    sa.Column('tx_bytes', sa.BigInteger(), nullable=True),
    sa.Column('stations', sa.Integer(), nullable=True),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('samples', schema=None) as batch_op:
        batch_op.create_index('ix_samples_device_ts', ['device_id', 'ts'], unique=False)



def downgrade():
    with op.batch_alter_table('samples', schema=None) as batch_op:
        batch_op.drop_index('ix_samples_device_ts')

    op.drop_table('samples')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_fleet')
        batch_op.drop_index('ix_jobs_device')

    op.drop_table('jobs')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_device')

    op.drop_table('events')
    op.drop_table('fleet_jobs')
    op.drop_table('devices')
