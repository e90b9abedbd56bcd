"""Fresh, migrated databases for each test, on SQLite and on PostgreSQL.

Migrating takes longer than copying, so each backend is migrated once into a template:
SQLite tests copy the template file, PostgreSQL tests `CREATE DATABASE ... TEMPLATE`.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

from sqlalchemy import create_engine, text

from brev.server.db.engine import make_engine
from brev.server.db.migrate import upgrade_to_head
from tests.postgres import PostgresCluster


def migrate_url(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            upgrade_to_head(connection)
            connection.commit()
    finally:
        engine.dispose()


class SqliteDatabases:
    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._template = workdir / "template.db"
        migrate_url(f"sqlite:///{self._template}")
        self._counter = itertools.count()

    def fresh(self) -> str:
        path = self._workdir / f"test-{next(self._counter)}.db"
        shutil.copyfile(self._template, path)
        return f"sqlite:///{path}"


class PostgresDatabases:
    TEMPLATE = "brev_template"

    def __init__(self, cluster: PostgresCluster) -> None:
        self._cluster = cluster
        self._prefix = "brev_test_"
        self._counter = itertools.count()
        self._admin = create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
        with self._admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {self.TEMPLATE}"))
        migrate_url(cluster.url(self.TEMPLATE))

    def fresh(self) -> str:
        name = f"{self._prefix}{next(self._counter)}"
        with self._admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name} TEMPLATE {self.TEMPLATE}"))
        return self._cluster.url(name)

    def empty(self) -> str:
        name = f"{self._prefix}empty_{next(self._counter)}"
        with self._admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        return self._cluster.url(name)

    def close(self) -> None:
        self._admin.dispose()
