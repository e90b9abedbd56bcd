"""The schema comes from the migrations alone, and the migrations match the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from brev.server.db.engine import make_engine
from brev.server.db.migrate import current_revision, head_revision, upgrade_to_head
from brev.server.db.models import Base
from tests.databases import PostgresDatabases


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: object) -> Engine:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/empty.db"
    else:
        databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
        url = databases.empty()
    engine = make_engine(url)
    request.addfinalizer(engine.dispose)
    return engine


def test_empty_to_head(empty_engine: Engine) -> None:
    with empty_engine.connect() as connection:
        assert current_revision(connection) is None
        upgrade_to_head(connection)
        connection.commit()
        assert current_revision(connection) == head_revision()
    assert set(inspect(empty_engine).get_table_names()) == {
        *Base.metadata.tables,
        "alembic_version",
    }


def test_no_drift_between_models_and_migrations(empty_engine: Engine) -> None:
    """What `alembic check` does: autogenerate against the migrated schema finds nothing."""
    with empty_engine.connect() as connection:
        upgrade_to_head(connection)
        connection.commit()
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrading_twice_is_a_no_op(empty_engine: Engine) -> None:
    with empty_engine.connect() as connection:
        upgrade_to_head(connection)
        connection.commit()
        upgrade_to_head(connection)
        connection.commit()
        assert current_revision(connection) == head_revision()


def test_the_downgrade_removes_everything(empty_engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    from brev.server.db.migrate import alembic_config

    with empty_engine.connect() as connection:
        upgrade_to_head(connection)
        connection.commit()
        config = alembic_config(connection)
        assert isinstance(config, Config)
        command.downgrade(config, "base")
        connection.commit()
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}


def test_rows_written_before_a_migration_survive_it(empty_engine: Engine) -> None:
    """Upgrades run on databases full of instances: added columns need values for old rows."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from brev.server.db.migrate import alembic_config

    with empty_engine.connect() as connection:
        config = alembic_config(connection)
        assert isinstance(config, Config)
        command.upgrade(config, "0001")
        connection.execute(
            text(
                "INSERT INTO users (id, email, name, created_at) VALUES ('u', 'a@b.c', '', :now);"
            ),
            {"now": "2026-01-01 00:00:00+00:00"},
        )
        connection.execute(
            text("INSERT INTO orgs (id, name, created_at) VALUES ('o', 'acme', :now)"),
            {"now": "2026-01-01 00:00:00+00:00"},
        )
        connection.execute(
            text(
                "INSERT INTO instances (id, org_id, name, status, desired_status, health, "
                "gpu_count, spot, idempotency_key, created_by_id, created_at, updated_at) "
                "VALUES ('i', 'o', 'old', 'running', 'running', 'unknown', 8, false, 'k', 'u', "
                ":now, :now)"
            ),
            {"now": "2026-01-01 00:00:00+00:00"},
        )
        connection.commit()
        upgrade_to_head(connection)
        connection.commit()
        row = connection.execute(text("SELECT name, attempt, plan FROM instances")).one()
    assert row[0] == "old" and row[1] == 0 and row[2] in ("[]", [])
