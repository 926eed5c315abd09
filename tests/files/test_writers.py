"""Writers of one data directory: each process's own id, and recovery of only the ones that are gone."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hearth.accounting.meter import UsageEvent
from hearth.files import service as files
from hearth.files import writers
from hearth.files.writers import WriterLease
from hearth.settings import Settings
from hearth.store import files as repo
from hearth.store.db import Database
from hearth.store.ids import now
from hearth.store.tables import File, Organization, Project


def test_only_writers_whose_process_has_ended_are_gone(tmp_path: Path) -> None:
    first, second = WriterLease(tmp_path), WriterLease(tmp_path)
    assert first.id != second.id
    assert list(writers.gone(tmp_path)) == []  # both held

    first.release()

    assert list(writers.gone(tmp_path)) == [first.id]
    assert list(writers.gone(tmp_path)) == []  # recovered once, its lock file removed
    assert [path.stem for path in (tmp_path / "writers").iterdir()] == [second.id]


def test_the_shared_id_of_earlier_versions_is_recovered_once(tmp_path: Path) -> None:
    (tmp_path / "writer-id").write_text("w-shared\n")

    assert list(writers.gone(tmp_path)) == ["w-shared"]
    assert list(writers.gone(tmp_path)) == []


class _Meter:
    def record(self, event: UsageEvent) -> None:
        pass


def test_a_server_starting_beside_a_running_writer_leaves_its_pending_writes(tmp_path: Path) -> None:
    """`hearth serve` and `hearth worker` on one data directory: the one that starts does not
    remove what the other is writing; once the other has stopped, its leftovers are removed."""
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'hearth.db'}")
    db = Database(settings.resolved_database_url)
    db.migrate()
    with db.session() as session:
        session.add(Organization(id="org_x", name="Test", created_at=now()))
        session.add(Project(id="proj_x", organization_id="org_x", name="x", status="active", created_at=now()))

    async def main() -> None:
        running = await files.open_file_storage(db, settings, _Meter())
        with db.session() as session:
            pending = repo.add_pending_file(session, project_id="proj_x", filename="out.jsonl",
                                            writer=running.writer)
        starting = await files.open_file_storage(db, settings, _Meter())
        assert starting.writer != running.writer
        with db.session() as session:
            assert session.get(File, pending.id) is not None

        assert running.lease is not None
        running.lease.release()  # its process ends
        files.sweep(starting)
        with db.session() as session:
            assert session.get(File, pending.id) is None

    try:
        asyncio.run(main())
    finally:
        db.dispose()
