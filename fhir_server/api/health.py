"""Liveness (/healthz: the process answers) and readiness (/readyz: storage answers)."""

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    await request.app.state.store.ping()  # StoreUnavailable becomes a 503 OperationOutcome
    return JSONResponse({"status": "ready"})


def routes() -> list[BaseRoute]:
    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
