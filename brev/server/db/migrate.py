"""Apply the alembic migrations shipped in `brev.migrations` (top-level `migrations/`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

from sqlalchemy import Connection, Engine, text

# Several replicas starting at once against PostgreSQL take turns: one migrates and
# bootstraps, the others wait and then find nothing to do.
_STARTUP_LOCK_KEY = 0x62726576  # "brev"


def alembic_config(connection: Connection | None = None) -> object:
    from alembic.config import Config

    script_location = Path(str(files("brev.migrations")))
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    return config


def upgrade_to_head(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = alembic_config(connection)
    assert isinstance(config, Config)
    command.upgrade(config, "head")


def current_revision(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = alembic_config()
    assert isinstance(config, Config)
    return ScriptDirectory.from_config(config).get_current_head()


@contextmanager
def startup_lock(engine: Engine) -> Iterator[Connection]:
    """A connection holding the cluster-wide start-up lock (PostgreSQL); plain on SQLite."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _STARTUP_LOCK_KEY})
            connection.commit()
        try:
            yield connection
        finally:
            if engine.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": _STARTUP_LOCK_KEY}
                )
                connection.commit()
