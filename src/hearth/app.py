"""The application factory: routers, middleware, error handlers and lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hearth.api import (
    chat,
    completions,
    embeddings,
    files,
    models,
    moderations,
    speech,
    transcriptions,
    uploads,
)
from hearth.api.errors import install_error_handlers
from hearth.api.middleware import (
    BodySizeLimitMiddleware,
    RequestContextMiddleware,
    body_limit_by_path,
)
from hearth.catalog.catalog import Catalog
from hearth.catalog.provision import ModelStore
from hearth.engines.registry import ModelRegistry
from hearth.firstrun import initialize
from hearth.settings import MiB, Settings
from hearth.store.db import Database

log = logging.getLogger("hearth")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(settings.resolved_database_url)
        database.migrate()
        initialize(database, settings.data_dir)
        catalog = Catalog.load()
        registry = ModelRegistry(catalog, ModelStore(settings.resolved_models_dir), settings)
        app.state.settings = settings
        app.state.db = database
        app.state.registry = registry
        for name in settings.default_models:
            spec = catalog.resolve(name)
            if registry.is_servable(spec):
                await registry.get(spec)
        try:
            yield
        finally:
            registry.shutdown()
            database.dispose()

    app = FastAPI(
        title="Hearth",
        summary="The OpenAI API, self-hosted.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    for router in (models.router, speech.router, transcriptions.router, files.router,
                   uploads.router, embeddings.router, moderations.router, chat.router,
                   completions.router):
        app.include_router(router, prefix="/v1")

    limits = body_limit_by_path(
        settings.max_json_body_bytes,
        [
            (r"/v1/audio/(transcriptions|translations)",
             settings.max_audio_upload_bytes + MiB),
            # Room for the multipart framing around the file itself.
            (r"/v1/files", settings.max_file_bytes + MiB),
            (r"/v1/uploads/[^/]+/parts", settings.max_upload_part_bytes + MiB),
        ],
    )
    # The last middleware added runs first: the request id wraps everything.
    app.add_middleware(BodySizeLimitMiddleware, limit_for=limits)
    app.add_middleware(RequestContextMiddleware)
    return app
