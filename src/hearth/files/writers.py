"""Which processes write Files into this data directory, and which of them are gone.

Each process that writes blobs takes a writer id of its own and holds an
exclusive lock (``flock``) on ``writers/<id>.lock`` in the data directory for
as long as it runs; the operating system drops the lock when the process
ends, however it ends. A pending row names its writer, so recovery takes
over the half-written rows of exactly the writers whose locks it can take:
their processes are gone. A server and a ``hearth worker`` sharing a data
directory therefore never clean up each other's writes in flight.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

WRITERS_DIR = "writers"
# Before each process had its own writer, a data directory had one id, kept in this file.
SHARED_ID_FILE = "writer-id"


class WriterLease:
    """This process's writer id, held (its lock file locked) until the process ends or ``release``."""

    def __init__(self, data_dir: Path) -> None:
        folder = data_dir / WRITERS_DIR
        folder.mkdir(mode=0o700, exist_ok=True)
        self.id = f"w-{uuid.uuid4().hex}"
        self._path = folder / f"{self.id}.lock"
        self._fd: int | None = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        """Stop writing as this writer: its leftovers become anyone's to recover."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def gone(data_dir: Path) -> Iterator[str]:
    """Each writer of this data directory whose process has ended.

    The writer's lock is held while the caller handles it, and its lock file
    is removed afterwards, so two processes never recover the same writer.
    """
    shared = data_dir / SHARED_ID_FILE
    if shared.is_file():
        yield shared.read_text().strip()
        shared.unlink(missing_ok=True)
    folder = data_dir / WRITERS_DIR
    for path in sorted(folder.glob("*.lock")) if folder.is_dir() else []:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue  # recovered by another process meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is running (this one's included)
            yield path.stem
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
