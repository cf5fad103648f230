"""Alembic environment: runs on the connection `course.migrate` hands it, never its own URL."""

from __future__ import annotations

from alembic import context

import course.models  # noqa: F401  (registers every table on the metadata)
import plugin.models  # noqa: F401
from course.database import Base

config = context.config
connection = config.attributes["connection"]

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds tables so one migration fits both.
    render_as_batch=True,
    compare_type=True,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
