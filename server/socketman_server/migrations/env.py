"""Alembic environment: the server passes its open connection in
config.attributes["connection"] (db.migrate); nothing is read from an ini."""
from alembic import context

from socketman_server.db import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
