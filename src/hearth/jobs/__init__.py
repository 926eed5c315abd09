"""Durable background jobs: a database-backed queue and the asyncio worker that runs it.

Free of HTTP: the server, a CLI worker process or a test can run a worker.
"""

from hearth.jobs.queue import ClaimedJob, JobQueue, JobSnapshot, JobStatus, Lease
from hearth.jobs.worker import Handler, JobContext, PermanentJobError, Worker

__all__ = [
    "ClaimedJob",
    "Handler",
    "JobContext",
    "JobQueue",
    "JobSnapshot",
    "JobStatus",
    "Lease",
    "PermanentJobError",
    "Worker",
]
