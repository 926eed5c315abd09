"""The composition root's contents: every long-lived object of one Hearth process.

``open_container`` builds them in dependency order (database, blob store,
models, meter, job queue, then the services over them) and closes them in
reverse. The HTTP app keeps one container and hands its parts to routes by
type (``hearth.http.deps.provide``); ``hearth worker`` opens one without any
HTTP at all. Nothing else constructs a service, so there is one place to see
what depends on what.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from typing import TypeVar

import anyio.to_thread

from hearth.accounting.meter import DatabaseMeter
from hearth.accounting.ratelimits import LimitedMeter, ModelLimits, ProjectLimits, RateLimiter
from hearth.assistants.code_interpreter import CodeInterpreter
from hearth.assistants.execution import RunExecutor
from hearth.assistants.file_search import FileSearch
from hearth.assistants.runs import RunService
from hearth.assistants.service import AssistantsService
from hearth.batches.endpoints import Endpoints
from hearth.batches.execution import BatchJobs
from hearth.batches.service import BatchService
from hearth.catalog.catalog import Catalog, UnknownModel
from hearth.catalog.provision import ModelStore
from hearth.catalog.user import catalog_for, preload_names
from hearth.chat.service import ChatService
from hearth.completions.service import CompletionService
from hearth.embeddings.service import EmbeddingsService
from hearth.engines.registry import ModelRegistry
from hearth.files import service as files
from hearth.files.service import FileStorage
from hearth.fine_tuning.execution import FineTuningJobs
from hearth.fine_tuning.service import FineTunedModels, FineTuningService
from hearth.firstrun import initialize
from hearth.images.links import ImageLinks, load_secret
from hearth.images.service import ImageService
from hearth.jobs import Handler, JobContext, JobQueue, Worker
from hearth.models.service import ModelService
from hearth.moderations.service import ModerationService
from hearth.ops.service import OpsService
from hearth.organization.service import OrganizationService
from hearth.organization.usage import UsageService
from hearth.responses.conversations import ConversationService
from hearth.responses.service import ResponseService
from hearth.sandbox import Limits, Sandbox
from hearth.settings import Settings
from hearth.speech.service import SpeechService
from hearth.store.db import Database, prepare_data_dir
from hearth.transcriptions.service import TranscriptionService
from hearth.vector_stores.execution import SWEEP as VECTOR_STORES_SWEEP
from hearth.vector_stores.execution import VectorStoreJobs
from hearth.vector_stores.index import ChunkIndex
from hearth.vector_stores.service import VectorStoreService

log = logging.getLogger("hearth")
T = TypeVar("T")

FILES_SWEEP = "files.sweep"


@dataclass
class Container:
    settings: Settings
    db: Database
    registry: ModelRegistry
    meter: DatabaseMeter
    jobs: JobQueue
    models: ModelService
    files: FileStorage
    speech: SpeechService
    transcriptions: TranscriptionService
    chat: ChatService
    completions: CompletionService
    embeddings: EmbeddingsService
    moderations: ModerationService
    batches: BatchService
    batch_jobs: BatchJobs
    limiter: RateLimiter
    organization: OrganizationService
    usage: UsageService
    responses: ResponseService
    conversations: ConversationService
    assistants: AssistantsService
    assistant_runs: RunService
    run_executor: RunExecutor
    fine_tuning: FineTuningService
    fine_tuning_jobs: FineTuningJobs
    vector_stores: VectorStoreService
    vector_store_jobs: VectorStoreJobs
    images: ImageService
    ops: OpsService

    def get(self, kind: type[T]) -> T:
        """The part of type ``kind`` (a service, the settings, the database)."""
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, kind):
                return value
        raise LookupError(f"the container holds no {kind.__name__}")

    def job_handlers(self) -> dict[str, Handler]:
        """Every kind of background job this process can run, by name."""

        async def sweep_files(_: JobContext) -> None:
            await anyio.to_thread.run_sync(files.sweep, self.files)

        return {FILES_SWEEP: sweep_files, **self.batch_jobs.handlers(), **self.responses.handlers(),
                **self.run_executor.handlers(), **self.fine_tuning_jobs.handlers(), **self.vector_store_jobs.handlers()}

    def worker(self) -> Worker:
        return Worker(self.jobs, self.job_handlers(), concurrency=self.settings.job_concurrency,
                      lease_seconds=self.settings.job_lease_seconds)


@asynccontextmanager
async def open_container(settings: Settings, *, load_models: bool = True) -> AsyncIterator[Container]:
    """Build every part, migrate the schema, and warm the default models when asked."""
    prepare_data_dir(settings.data_dir)
    db = Database(settings.resolved_database_url)
    await anyio.to_thread.run_sync(db.migrate)
    await anyio.to_thread.run_sync(initialize, db, settings.data_dir)
    # Built-in and user catalog merged; a malformed user catalog stops the start here, clearly.
    registry = ModelRegistry(catalog_for(settings), ModelStore(settings.resolved_models_dir), settings)
    meter = DatabaseMeter(db)
    meter.start()
    jobs = JobQueue(db)
    await anyio.to_thread.run_sync(jobs.ensure_schedule, FILES_SWEEP, FILES_SWEEP,
                                   settings.sweep_interval_seconds)
    await anyio.to_thread.run_sync(jobs.ensure_schedule, VECTOR_STORES_SWEEP, VECTOR_STORES_SWEEP,
                                   settings.sweep_interval_seconds)
    limiter = rate_limiter(db, settings, registry.catalog)
    models = ModelService(registry, limiter)
    # What services record is also counted against the rate limits (tokens, images).
    metered = LimitedMeter(meter, limiter)
    try:
        storage = await files.open_file_storage(db, settings, meter)
        chat = ChatService(models, metered)
        completions = CompletionService(models, metered)
        embeddings = EmbeddingsService(models, metered)
        moderations = ModerationService(models, metered)
        # The vector index: LanceDB in the data directory, or in the S3 bucket every process shares.
        index = await anyio.to_thread.run_sync(ChunkIndex.from_settings, settings)
        vector_stores = VectorStoreService(db, jobs, embeddings, index, storage, settings)
        vector_store_jobs = VectorStoreJobs(db, storage, embeddings, index)
        sandbox = Sandbox(Limits(wall_seconds=settings.sandbox_wall_seconds, cpu_seconds=settings.sandbox_cpu_seconds,
                                 memory_bytes=settings.sandbox_memory_mb << 20,
                                 processes=settings.sandbox_processes),
                          slots=settings.sandbox_slots, uid_base=settings.sandbox_uid_base)
        run_executor = RunExecutor(db, jobs, chat, settings, CodeInterpreter(db, storage, sandbox, meter),
                                   file_search=FileSearch(vector_stores, vector_store_jobs))
        # Fine-tuned (ft:) models resolve through the fine-tuning area, per project.
        models.adapted = FineTunedModels(db)
        fine_tuning_jobs = FineTuningJobs(db, jobs, storage, models, meter, settings)
        await anyio.to_thread.run_sync(fine_tuning_jobs.recover)
        container = Container(
            settings=settings, db=db, registry=registry, meter=meter, jobs=jobs, models=models,
            files=storage,
            speech=SpeechService(models, metered),
            transcriptions=TranscriptionService(models, metered, settings.max_audio_upload_bytes),
            chat=chat, completions=completions, embeddings=embeddings, moderations=moderations,
            batches=BatchService(db, jobs, settings),
            batch_jobs=BatchJobs(db, jobs, storage, Endpoints(chat, completions, embeddings, moderations),
                                 line_concurrency=settings.batch_line_concurrency),
            limiter=limiter,
            organization=OrganizationService(db, settings, limiter.limits,
                                             lambda: [spec.id for spec in registry.catalog.models]),
            usage=UsageService(db, settings),
            responses=ResponseService(db, jobs, chat, storage),
            conversations=ConversationService(db),
            images=ImageService(models, metered, storage.blobs,
                                ImageLinks(load_secret(settings.data_dir, settings.image_url_secret),
                                           settings.image_url_ttl_seconds)),
            assistants=AssistantsService(db, models, vector_stores=vector_stores),
            assistant_runs=RunService(db, jobs, models, run_executor, settings),
            run_executor=run_executor,
            fine_tuning=FineTuningService(db, jobs, registry.catalog, registry.store.is_present),
            fine_tuning_jobs=fine_tuning_jobs,
            vector_stores=vector_stores,
            vector_store_jobs=vector_store_jobs,
            ops=OpsService(db, storage.blobs, registry, jobs, lambda: preload_names(settings, registry.catalog)),
        )
        if load_models and settings.preload_models:
            await _warm(container)
        yield container
    finally:
        registry.shutdown()
        await anyio.to_thread.run_sync(meter.close)
        db.dispose()


def rate_limiter(db: Database, settings: Settings, catalog: Catalog) -> RateLimiter:
    """Counters in this process, or in Redis when ``HEARTH_REDIS_URL`` names one (shared by every process)."""
    defaults = ModelLimits(max_requests_per_1_minute=settings.default_requests_per_minute,
                           max_tokens_per_1_minute=settings.default_tokens_per_minute,
                           max_requests_per_1_day=settings.default_requests_per_day,
                           max_images_per_1_minute=settings.default_images_per_minute)

    def canonical(name: str) -> str | None:
        try:
            return catalog.resolve(name).id
        except UnknownModel:
            return None

    return RateLimiter(ProjectLimits(db, defaults, settings.rate_limit_cache_seconds),
                       settings.redis_url or "memory://", canonical)


async def _warm(container: Container) -> None:
    catalog = container.registry.catalog
    for name in preload_names(container.settings, catalog):
        spec = catalog.resolve(name)
        if container.registry.is_servable(spec):
            await container.registry.get(spec)


async def run_until_signalled(worker: Worker) -> None:
    """Run ``worker`` until SIGINT or SIGTERM, then let it hand its jobs back."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("worker %s is running jobs", worker.worker_id)
    await worker.run(stop)


@asynccontextmanager
async def running_worker(container: Container) -> AsyncIterator[None]:
    """Run the container's job worker in the background until the block ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(container.worker().run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


