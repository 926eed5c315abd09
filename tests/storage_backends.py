"""Live servers for the Files and Uploads suites, on both storage stacks.

``files_server`` runs each test twice: on the embedded stack (SQLite and a
local blob directory) and on the scale stack (PostgreSQL on 127.0.0.1:5432
and S3, served by moto on loopback). Size limits are lowered so the limit
tests need megabytes, not gigabytes. Import the fixtures into a test module
to use them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import psycopg
import pytest
from moto.server import ThreadedMotoServer
from openai import OpenAI

from hearth.store.db import Database
from hearth.store.ids import new_id, now
from hearth.store.keys import mint_key
from hearth.store.tables import File, Project, UploadPart
from tests.conftest import LiveServer, _free_port, start_server, stop_server

MiB = 1024 * 1024
LIMITS = {
    "HEARTH_MAX_FILE_BYTES": str(2 * MiB),
    "HEARTH_MAX_UPLOAD_PART_BYTES": str(1 * MiB),
    "HEARTH_MAX_UPLOAD_BYTES": str(6 * MiB),
}
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Backend:
    """Where a server keeps its state, so tests can look underneath the API."""

    name: str
    env: dict[str, str]
    database_url: str
    s3: object | None = None  # a boto3 client when blobs live in S3
    bucket: str | None = None
    _db: Database | None = field(default=None, repr=False)

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(self.database_url)
        return self._db

    def blob_keys(self, data_dir: Path) -> set[str]:
        if self.s3 is not None:
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
            return {obj["Key"] for page in pages for obj in page.get("Contents", [])}
        # A blob is a file at its key, or a directory <key>.joined of the pieces it was joined from.
        root = data_dir / "blobs"
        keys = set()
        for path in root.rglob("*"):
            key = str(path.relative_to(root))
            if path.is_dir() and path.name.endswith(".joined"):
                keys.add(key.removesuffix(".joined"))
            elif path.is_file() and path.parent.suffix != ".joined":
                keys.add(key)
        return keys

    def unfinished_s3_uploads(self) -> list[dict]:
        if self.s3 is None:
            return []
        return self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])

    def pending_rows(self) -> int:
        with self.db.session() as session:
            return (session.query(File).filter(File.status != "processed").count()
                    + session.query(UploadPart).filter(UploadPart.status != "ready").count())

    def new_project_key(self) -> str:
        """A key for a fresh project in the same organization."""
        return new_project_key(self.db)[2]


def new_project_key(db: Database) -> tuple[str, str, str]:
    """A fresh project in the server's organization: its id, a key's id and the key's secret."""
    with db.session() as session:
        org_id = session.query(Project.organization_id).first()[0]
        project = Project(id=new_id("proj_"), organization_id=org_id, name="Other project",
                          status="active", created_at=now())
        session.add(project)
        session.flush()
        key = mint_key(session, kind="project", organization_id=org_id, project_id=project.id,
                       name="other")
        return project.id, key.record.id, key.secret


@dataclass
class FilesServer:
    live: LiveServer
    backend: Backend

    def client(self, **kwargs) -> OpenAI:
        return self.live.client(**kwargs)

    def other_client(self) -> OpenAI:
        return self.live.client(api_key=self.backend.new_project_key())

    def blob_keys(self) -> set[str]:
        return self.backend.blob_keys(self.live.data_dir)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    try:
        psycopg.connect(PG_ADMIN, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        # CI starts PostgreSQL (.ci/run), so there its absence is a failure, not a skip.
        message = f"PostgreSQL is not reachable on 127.0.0.1:5432: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return PG_ADMIN


def _fresh_pg_database(admin_url: str) -> str:
    name = f"hearth_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_pg_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_backend(kind: str, tmp: Path, request: pytest.FixtureRequest) -> Backend:
    """A fresh, empty backend; PostgreSQL databases are dropped when the session ends."""
    if kind == "sqlite-disk":
        url = f"sqlite:///{tmp / 'hearth.db'}"
        return Backend(kind, {"HEARTH_DATABASE_URL": url}, url)
    admin = request.getfixturevalue("pg_admin_url")
    endpoint = request.getfixturevalue("moto_endpoint")
    name = _fresh_pg_database(admin)
    request.addfinalizer(lambda: _drop_pg_database(admin, name))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    bucket = name.replace("_", "-")
    credentials = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **credentials)
    env = {
        "HEARTH_DATABASE_URL": url,
        "HEARTH_BLOB_STORE": "s3",
        "HEARTH_S3_ENDPOINT_URL": endpoint,
        "HEARTH_S3_BUCKET": bucket,
        "HEARTH_S3_REGION": "us-east-1",
        "HEARTH_S3_ACCESS_KEY_ID": "test",
        "HEARTH_S3_SECRET_ACCESS_KEY": "test",
    }
    return Backend(kind, env, url, s3, bucket)


def start_files_server(data_dir: Path, backend: Backend, **env: str) -> LiveServer:
    # No models: these servers only store files.
    return start_server(data_dir, data_dir / "models", HEARTH_DEFAULT_MODELS="[]",
                        **{**LIMITS, **backend.env, **env})


@pytest.fixture(scope="session", params=["sqlite-disk", "postgres-s3"])
def files_server(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilesServer]:
    tmp = tmp_path_factory.mktemp(f"files-{request.param}")
    backend = make_backend(request.param, tmp, request)
    live = start_files_server(tmp / "data", backend)
    yield FilesServer(live, backend)
    stop_server(live)
    backend.db.dispose()
    assert "Traceback" not in live.log(), live.log()
