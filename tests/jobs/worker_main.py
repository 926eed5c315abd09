"""A worker process for the process tests.

    python tests/jobs/worker_main.py DATABASE_URL LEASE_SECONDS CONCURRENCY

It runs one handler, ``count``, which counts from the saved ``progress["i"]``
(0 at first) to ``payload["n"]``, saving progress after every step, and
appends what it does to the file ``payload["log"]``, one line per event:

    start <job id> <first step> <pid>
    step <job id> <i> <pid>
    done <job id> <pid>

Each line is one write to a file opened with O_APPEND, so lines from several
processes never interleave. SIGTERM stops the worker gracefully.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from hearth.jobs import JobContext, JobQueue, Worker
from hearth.store.db import Database


def append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


async def count(ctx: JobContext) -> dict[str, int]:
    log, n, pid = ctx.payload["log"], ctx.payload["n"], os.getpid()
    i = ctx.progress.get("i", 0)
    append(log, f"start {ctx.job_id} {i} {pid}")
    while i < n:
        await asyncio.sleep(ctx.payload["step_seconds"])
        append(log, f"step {ctx.job_id} {i} {pid}")
        i += 1
        await ctx.save_progress({"i": i})
    append(log, f"done {ctx.job_id} {pid}")
    return {"counted": n}


async def main(database_url: str, lease_seconds: float, concurrency: int) -> None:
    db = Database(database_url)
    worker = Worker(JobQueue(db), {"count": count}, concurrency=concurrency, lease_seconds=lease_seconds,
                    poll_interval=0.05)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await worker.run(stop)
    finally:
        db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
