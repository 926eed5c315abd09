"""Is this process ready to serve, and the readings only it can take for the metrics.

Readiness is three checks, run side by side, each given a few seconds:

- ``database``: a ``SELECT 1`` through the process's pool (a fresh connection
  where the pool's was lost);
- ``blobs``: the blob store answers (local: its directory is there and
  writable; S3: ``HeadBucket`` on the bucket);
- ``models``: every start-up model (``HEARTH_DEFAULT_MODELS`` and the
  per-kind defaults) can answer: loaded, or pulled and loadable on first use
  where preloading is off. A server that preloads does not accept connections
  before its models are loaded, so once it answers at all they are.

Failures are logged with their cause; the answer names only the failed check
and a short reason, since ``/ready`` takes no key and its reasons (hosts,
paths) are an operator's business.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import text

from hearth import metrics
from hearth.catalog.catalog import UnknownModel
from hearth.engines.registry import ModelRegistry
from hearth.jobs.queue import JobQueue
from hearth.store.blobs import BlobStore, LocalBlobStore, S3BlobStore
from hearth.store.db import Database

log = logging.getLogger("hearth.ops")

CHECK_TIMEOUT_SECONDS = 5.0


@dataclass
class Check:
    ok: bool
    reason: str | None = None
    # models only: each start-up model and whether it can answer (``ready``) or not (``missing``)
    models: dict[str, str] | None = None


@dataclass
class Readiness:
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, check in self.checks.items() if not check.ok]


class OpsService:
    def __init__(self, db: Database, blobs: BlobStore, registry: ModelRegistry, jobs: JobQueue,
                 startup_models: Callable[[], list[str]]) -> None:
        self.db = db
        self.blobs = blobs
        self.registry = registry
        self.jobs = jobs
        self.startup_models = startup_models

    async def readiness(self) -> Readiness:
        names = ("database", "blobs", "models")
        results = await asyncio.gather(
            self._timed("database", self._check_database),
            self._timed("blobs", self._check_blobs),
            self._timed("models", self._check_models))
        return Readiness(dict(zip(names, results, strict=True)))

    async def _timed(self, name: str, check: Callable[[], Check]) -> Check:
        """Run a blocking check on a thread; a check that hangs fails after the timeout."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(check), CHECK_TIMEOUT_SECONDS)
        except TimeoutError:
            log.warning("readiness check %s did not answer within %.0f s", name, CHECK_TIMEOUT_SECONDS)
            return Check(False, "timed out")
        except Exception:
            log.warning("readiness check %s failed", name, exc_info=True)
            return Check(False, "unreachable")

    def _check_database(self) -> Check:
        with self.db.session() as session:
            session.execute(text("SELECT 1"))
        return Check(True)

    def _check_blobs(self) -> Check:
        if isinstance(self.blobs, LocalBlobStore):
            root = self.blobs.root
            if not (root.is_dir() and os.access(root, os.W_OK | os.X_OK)):
                log.warning("readiness: the blob directory %s is missing or not writable", root)
                return Check(False, "not writable")
        elif isinstance(self.blobs, S3BlobStore):
            self.blobs.client.head_bucket(Bucket=self.blobs.bucket)
        return Check(True)

    def _check_models(self) -> Check:
        states: dict[str, str] = {}
        for name in self.startup_models():
            try:
                spec = self.registry.catalog.resolve(name)
            except UnknownModel:
                states[name] = "missing"
                continue
            states[name] = "ready" if self.registry.is_servable(spec) else "missing"
        missing = [name for name, state in states.items() if state != "ready"]
        if missing:
            log.warning("readiness: start-up models not pulled: %s", ", ".join(missing))
            return Check(False, "not pulled: " + ", ".join(missing), states)
        return Check(True, None, states)

    def job_depth(self) -> Iterator[tuple[tuple[str, str], float]]:
        """Unfinished jobs by kind and state, for the metrics (read when scraped)."""
        for kind, state, count in self.jobs.depth():
            yield (kind, state), float(count)

    @contextmanager
    def metrics_collected(self) -> Iterator[None]:
        """Expose the readings only this service can take (the job queue) while the block runs."""
        unregister = metrics.callback_gauge(
            "hearth_jobs", "Unfinished background jobs in the shared queue (all processes), by kind "
            "and state: queued (due now), scheduled (due later) and running.", ["kind", "state"],
            self.job_depth)
        try:
            yield
        finally:
            unregister()
