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
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from fhir_server import (
    GuardedRoute,
    JobService,
    JobStore,
    Settings,
    SmartAccess,
    create_app,
    kick_off,
)

from .worker import ExportWorker


def create_export_app(
    settings: Settings | None = None,
    store: JobStore | None = None,
    *,
    export_dir: Path | None = None,
    pause: float = 1.0,
) -> Starlette:
    export_dir = export_dir or Path(tempfile.mkdtemp(prefix="fhir-export-"))
    worker: ExportWorker | None = None

    async def export(request: Request) -> Response:
        assert worker is not None
        return await kick_off(request, worker.jobs, type="bulk-export", start=worker.start)

    app = create_app(
        settings,
        store,
        routes=[
            # A kick-off creates a job: it needs the create permission on AsyncJob.
            GuardedRoute(
                "/fhir/R4/$export",
                export,
                methods=["GET", "POST"],
                access=SmartAccess("AsyncJob", "c"),
            ),
            Mount("/exports", StaticFiles(directory=export_dir), name="exports"),
        ],
    )
    worker = ExportWorker(JobService(app.state.store), export_dir, pause=pause)
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
