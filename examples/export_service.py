"""An example service that runs AsyncJobs in-process: `$export` of the server's own AsyncJobs.

    python -m examples.export_service      # from the repository root; http://127.0.0.1:8000

`GET|POST /fhir/R4/$export` with `Prefer: respond-async` kicks off a Bulk Data export (202
and a Content-Location to poll); the worker writes NDJSON files served under /exports/ to
callers with a token that reads AsyncJobs (so the manifest says `requiresAccessToken: true`).
The FHIR API, the status endpoint included, is the fhir-server app itself, on the same store:
once the job completes, polling answers the Bulk Data manifest.

Of the kick-off parameters of Bulk Data's system-level export, `_type` (AsyncJob only),
`_since` and `_outputFormat` (NDJSON) are served, in the URL; any other parameter, or a POST
body, is refused with a 400.
"""

import contextlib
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from fhir_server import (
    FhirError,
    GuardedRoute,
    JobService,
    JobStore,
    Settings,
    SmartAccess,
    create_app,
    kick_off,
)

from .worker import SINCE, ExportWorker

OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
EXPORTED_TYPE = "AsyncJob"


def _is_instant(value: str) -> bool:
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def check_kick_off(request: Request) -> None:
    """400 (an OperationOutcome) for a kick-off parameter this export cannot honour: a
    client would otherwise take everything for the answer to its narrower question."""
    for name, value in request.query_params.multi_items():
        if name == "_outputFormat" and value in OUTPUT_FORMATS:
            continue
        if name == "_type" and all(t == EXPORTED_TYPE for t in value.split(",")):
            continue
        if name == SINCE and _is_instant(value):
            continue  # the worker reads it from the URL the job records as its request
        raise FhirError.of(
            "not-supported",
            f"$export parameter {name}={value[:80]} is not supported here: only _type=AsyncJob, "
            "_since (an instant) and _outputFormat=application/fhir+ndjson",
            name[:40],
        )


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
        check_kick_off(request)
        if await request.body():
            # Bulk Data also takes the parameters as a Parameters body of a POST; this
            # example reads them from the URL only, and says so rather than ignore them.
            raise FhirError.of(
                "not-supported", "Send the $export parameters in the URL; a body is not read"
            )
        return await kick_off(request, worker.jobs, type="bulk-export", start=worker.start)

    files = StaticFiles(directory=export_dir)

    async def exported(request: Request) -> Response:
        # StaticFiles keeps the path inside export_dir (no ../); a missing file is a 404.
        return await files.get_response(request.path_params["path"], request.scope)

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
            # The files hold every job of the store: only for callers who may read jobs.
            GuardedRoute(
                "/exports/{path:path}",
                exported,
                methods=["GET"],
                access=SmartAccess("AsyncJob", "r"),
            ),
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
