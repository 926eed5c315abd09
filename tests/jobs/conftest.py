"""The job suites' databases: each module runs on SQLite and on PostgreSQL.

A module gets one migrated database per backend (PostgreSQL's is created
for it and dropped after); every test starts from empty job tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete

from hearth.jobs import JobQueue
from hearth.store.db import Database
from hearth.store.tables import Job, JobSchedule
from tests.storage_backends import _drop_pg_database, _fresh_pg_database


class Clock:
    """A clock tests move by hand, so leases expire and retries fall due without sleeping."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.time = start

    def __call__(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("jobs") / "hearth.db"
        yield f"sqlite:///{path}"
        return
    admin = request.getfixturevalue("pg_admin_url")
    name = _fresh_pg_database(admin)
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    _drop_pg_database(admin, name)


@pytest.fixture(scope="module")
def migrated_db(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def db(migrated_db: Database) -> Database:
    with migrated_db.session() as session:
        session.execute(delete(Job))
        session.execute(delete(JobSchedule))
    return migrated_db


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(db: Database, clock: Clock) -> JobQueue:
    return JobQueue(db, now=clock)
