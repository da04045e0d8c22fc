"""An example service that runs AsyncJobs in-process: `$export` of the server's own AsyncJobs.

    python -m examples.export_service      # from the repository root; http://127.0.0.1:8000

`GET|POST /fhir/R4/$export` with `Prefer: respond-async` kicks off a job (202 and a
Content-Location to poll); the worker writes NDJSON files served under /exports/. The FHIR
API, the status endpoint included, is the fhir-server app itself, on the same store.
"""

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fhir_server.app import create_app
from fhir_server.auth.middleware import RequireAccess
from fhir_server.auth.scopes import CREATE
from fhir_server.config import Settings
from fhir_server.jobs import JobService
from fhir_server.jobs.kickoff import kick_off
from fhir_server.storage.base import JobStore

from .worker import ExportWorker


def create_export_app(
    settings: Settings | None = None,
    store: JobStore | None = None,
    *,
    export_dir: Path | None = None,
    pause: float = 1.0,
) -> Starlette:
    app = create_app(settings, store)
    export_dir = export_dir or Path(tempfile.mkdtemp(prefix="fhir-export-"))
    jobs = JobService(app.state.store)
    worker = ExportWorker(jobs, export_dir, pause=pause)

    async def export(request: Request) -> Response:
        return await kick_off(request, jobs, type="bulk-export", start=worker.start)

    kick_off_route = Route("/fhir/R4/$export", export, methods=["GET", "POST"])
    kick_off_route.app = RequireAccess(kick_off_route.app, CREATE)  # a kick-off creates a job
    app.router.routes[0:0] = [
        kick_off_route,
        Mount("/exports", StaticFiles(directory=export_dir), name="exports"),
    ]
    serve_fhir = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with serve_fhir(app):
            yield
            await worker.stop()

    app.router.lifespan_context = lifespan
    app.state.worker = worker
    return app


if __name__ == "__main__":
    import uvicorn

    settings = Settings()
    uvicorn.run(create_export_app(settings), host=settings.host, port=settings.port)
