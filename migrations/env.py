"""Alembic environment: runs against the connection that `brev.server.db.migrate` hands over,
or, from the `alembic` command line, against BREV_DATABASE_URL."""

from __future__ import annotations

import os
from typing import Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import create_engine

from brev.server.db.models import Base, UTCDateTime

target_metadata = Base.metadata


def _render_item(type_: str, obj: object, autogen_context: AutogenContext) -> str | Literal[False]:
    # Migrations must not import model code that may change later: UTC columns are written
    # as the plain type they store.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = os.environ.get("BREV_DATABASE_URL")
    if not url:
        raise SystemExit("set BREV_DATABASE_URL to the database to migrate")
    with create_engine(url).connect() as own_connection:
        _run(own_connection)
        own_connection.commit()
