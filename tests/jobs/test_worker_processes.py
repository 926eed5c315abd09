"""Workers as real processes (``worker_main.py``): killed mid-job, and racing for jobs.

Each handler step and outcome is appended to a log file, so the tests can
count what actually ran, not only what the database says. Waits poll with
generous deadlines; nothing asserts on how long anything took.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hearth.jobs import JobQueue, JobStatus
from hearth.store.db import Database
from hearth.store.tables import Job

WORKER_MAIN = Path(__file__).with_name("worker_main.py")
DEADLINE = 60.0


class Workers:
    """Worker processes started by one test; whatever is still alive at the end is killed."""

    def __init__(self, database_url: str, output: Path) -> None:
        self._database_url = database_url
        self._output = output
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *, lease_seconds: float, concurrency: int = 2) -> subprocess.Popen[bytes]:
        output = (self._output / f"worker-{len(self.processes)}.out").open("wb")
        process = subprocess.Popen(
            [sys.executable, str(WORKER_MAIN), self._database_url, str(lease_seconds), str(concurrency)],
            stdout=output, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def outputs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self._output.glob("worker-*.out")))

    def stop_all(self) -> None:
        """SIGTERM, the graceful stop, to every live worker; each must then exit cleanly."""
        alive = [process for process in self.processes if process.poll() is None]
        for process in alive:
            process.terminate()
        for process in alive:
            assert process.wait(timeout=DEADLINE) == 0, self.outputs()


@contextmanager
def workers(database_url: str, output: Path) -> Iterator[Workers]:
    spawned = Workers(database_url, output)
    try:
        yield spawned
    finally:
        for process in spawned.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def wait_until(condition: Callable[[], bool], describe: Callable[[], str]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, describe()
        time.sleep(0.02)


def log_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def test_killed_worker_job_resumes_elsewhere_from_its_progress(database_url: str, db: Database,
                                                               tmp_path: Path) -> None:
    queue = JobQueue(db)
    log = tmp_path / "count.log"
    n = 40
    job_id = queue.enqueue("count", {"n": n, "log": str(log), "step_seconds": 0.05})

    def progress() -> int:
        job = queue.get(job_id)
        return (job.progress or {}).get("i", 0) if job else 0

    def succeeded() -> bool:
        job = queue.get(job_id)
        return job is not None and job.status is JobStatus.SUCCEEDED

    with workers(database_url, tmp_path) as spawned:
        first = spawned.start(lease_seconds=1.0)
        wait_until(lambda: progress() >= 5, spawned.outputs)
        first.kill()
        first.wait()
        resumed_from = progress()
        assert resumed_from < n, "the job finished before the kill; make it longer"

        second = spawned.start(lease_seconds=1.0)
        wait_until(succeeded, lambda: f"{queue.get(job_id)}\n{spawned.outputs()}")
        spawned.stop_all()

    job = queue.get(job_id)
    assert job is not None
    assert (job.attempts, job.result) == (2, {"counted": n})

    lines = log_lines(log)
    starts = [line for line in lines if line[0] == "start"]
    assert starts == [["start", job_id, "0", str(first.pid)], ["start", job_id, str(resumed_from), str(second.pid)]]
    assert [line for line in lines if line[0] == "done"] == [["done", job_id, str(second.pid)]]

    # Every step ran once, except that the one in flight at the kill may have run again.
    steps = Counter(int(line[2]) for line in lines if line[0] == "step")
    assert set(steps) == set(range(n))
    assert all(times == 1 for step, times in steps.items() if step != resumed_from), steps
    assert steps[resumed_from] in (1, 2)


def test_two_workers_run_each_job_once(database_url: str, db: Database, tmp_path: Path) -> None:
    queue = JobQueue(db)
    log = tmp_path / "count.log"
    job_ids = {queue.enqueue("count", {"n": 3, "log": str(log), "step_seconds": 0.01}) for _ in range(40)}

    def succeeded() -> int:
        with db.session() as session:
            return session.query(Job).filter(Job.status == JobStatus.SUCCEEDED).count()

    with workers(database_url, tmp_path) as spawned:
        spawned.start(lease_seconds=30.0)
        spawned.start(lease_seconds=30.0)
        wait_until(lambda: succeeded() == len(job_ids), lambda: f"{succeeded()} done\n{spawned.outputs()}")
        spawned.stop_all()

    lines = log_lines(log)
    assert Counter(line[1] for line in lines if line[0] == "start") == Counter(job_ids)
    assert Counter(line[1] for line in lines if line[0] == "done") == Counter(job_ids)
    assert all(job.attempts == 1 for job in map(queue.get, job_ids) if job is not None)
