"""Liveness (/healthz: the process answers), readiness (/readyz: storage answers) and the
Prometheus metrics (/metrics)."""

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..observability.metrics import Metrics


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    for store in request.app.state.stores.values():
        await store.ping()  # StoreUnavailable becomes a 503 OperationOutcome
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    app_metrics: Metrics = request.app.state.metrics
    await app_metrics.count_jobs(request.app.state.store)
    return Response(app_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
