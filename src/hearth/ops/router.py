"""GET /health, /ready and /metrics: for load balancers, orchestrators and Prometheus; no key.

``/health`` says the process is alive and serving HTTP. ``/ready`` says whether
it can do its work (database, blob store, start-up models): 200, or 503 in the
error envelope with the failed checks beside it. ``/metrics`` is this
process's Prometheus registry (``hearth.metrics``).
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from hearth import metrics
from hearth.errors import envelope
from hearth.http.deps import provide
from hearth.ops.service import Check, OpsService

router = APIRouter(include_in_schema=False)
Ops = Annotated[OpsService, Depends(provide(OpsService))]


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def _check(check: Check) -> dict[str, Any]:
    shown: dict[str, Any] = {"ok": check.ok}
    if check.reason is not None:
        shown["reason"] = check.reason
    if check.models is not None:
        shown["models"] = check.models
    return shown


@router.get("/ready")
async def ready(ops: Ops) -> JSONResponse:
    readiness = await ops.readiness()
    checks = {name: _check(check) for name, check in readiness.checks.items()}
    if readiness.ready:
        return JSONResponse({"status": "ready", "checks": checks})
    failed = readiness.failed
    body = envelope(f"Not ready: {', '.join(f'{name} ({readiness.checks[name].reason})' for name in failed)}.",
                    "server_error", code="not_ready")
    return JSONResponse({**body, "checks": checks}, status_code=503, headers={"retry-after": "5"})


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    # Rendering reads the job queue from the database: off the event loop.
    return Response(await anyio.to_thread.run_sync(metrics.render), media_type=metrics.CONTENT_TYPE)
