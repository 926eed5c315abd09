"""The application factory: the one composition root of the HTTP server.

``create_app`` opens one container (``hearth.container``) for the app's
lifetime, runs the job worker beside it, mounts every area's router and the
middleware, and installs the error envelope.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from hearth.assistants.router import router as assistants
from hearth.batches.router import router as batches
from hearth.chat.router import router as chat
from hearth.completions.router import router as completions
from hearth.container import open_container, running_worker
from hearth.embeddings.router import router as embeddings
from hearth.files.router import router as files
from hearth.fine_tuning.router import router as fine_tuning
from hearth.http.errors import install_error_handlers
from hearth.http.metrics import MetricsMiddleware
from hearth.http.middleware import BodySizeLimitMiddleware, RequestContextMiddleware, body_limit_by_path
from hearth.http.openapi import install_openapi
from hearth.http.ratelimits import RateLimitHeadersMiddleware
from hearth.images.router import router as images
from hearth.models.router import router as models
from hearth.moderations.router import router as moderations
from hearth.ops.router import router as ops
from hearth.organization.router import router as organization
from hearth.playground.router import router as playground
from hearth.responses.router import router as responses
from hearth.settings import MiB, Settings
from hearth.speech.router import router as speech
from hearth.transcriptions.router import router as transcriptions
from hearth.vector_stores.router import router as vector_stores

ROUTERS = (models, speech, transcriptions, files, embeddings, moderations, chat, completions, batches, responses,
           organization, assistants, images, vector_stores, fine_tuning)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            container = await stack.enter_async_context(open_container(settings))
            if settings.run_worker:
                await stack.enter_async_context(running_worker(container))
            stack.enter_context(container.ops.metrics_collected())
            app.state.services = container
            yield

    app = FastAPI(
        title="Hearth",
        summary="The OpenAI API, self-hosted.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_openapi(app)

    # /health, /ready and /metrics: for load balancers and Prometheus, outside the API's /v1.
    app.include_router(ops)
    for router in ROUTERS:
        app.include_router(router, prefix="/v1")
    # The browser playground at `/` (static files; it calls the API above like any client).
    app.include_router(playground)

    limits = body_limit_by_path(
        settings.max_json_body_bytes,
        [
            (r"/v1/audio/(transcriptions|translations)",
             settings.max_audio_upload_bytes + MiB),
            # Room for the multipart framing around the file itself.
            (r"/v1/files", settings.max_file_bytes + MiB),
            (r"/v1/uploads/[^/]+/parts", settings.max_upload_part_bytes + MiB),
            (r"/v1/images/(edits|variations)", settings.max_image_request_bytes),
        ],
    )
    # The last middleware added runs first: the request id wraps everything.
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, limit_for=limits)
    if settings.cors_origins:
        # Browsers ask first (an OPTIONS preflight), then read only what is exposed.
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["*"], allow_headers=["*"], max_age=600,
                           expose_headers=["x-request-id", "openai-processing-ms", "retry-after",
                                           *(f"x-ratelimit-{what}-{unit}" for what in ("limit", "remaining", "reset")
                                             for unit in ("requests", "tokens"))])
    # Counts every request (its route template and status) in this process's Prometheus metrics.
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestContextMiddleware)
    return app
