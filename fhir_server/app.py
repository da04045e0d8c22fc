"""Builds the Starlette application from settings: the only place that wires things."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import Receive, Scope, Send

from .api import cancel, ehealth, fhir, health, openapi, status, writes
from .api.body_limit import BodyLimitMiddleware
from .api.errors import EXCEPTION_HANDLERS
from .api.hot_routes import HotRoutes
from .api.limits import InputLimits
from .auth.middleware import AuthenticationMiddleware, guard_routes
from .auth.setup import token_verifier
from .config import Settings
from .jobs.retention import sweep
from .loader import load_paths
from .observability import metrics
from .observability.access_log import AccessLog
from .observability.middleware import Telemetry, TelemetryMiddleware
from .search.parse import SearchLimits
from .secrets_file import persistent_secret
from .storage.base import JobStore
from .storage.guard import with_deadline
from .storage.opening import open_store

log = logging.getLogger("fhir_server")
SECRET_FILE = "secret-key"


def build_store(settings: Settings) -> JobStore:
    """MongoDB when a URI is configured, else the embedded SQLite file in the data dir."""
    if settings.mongodb_uri:
        from .storage.mongo import MongoJobStore
        from .storage.mongo_client import connect

        return MongoJobStore(connect(settings)[settings.mongodb_database])
    from .storage.sqlite import FILE_NAME, SqliteJobStore

    return SqliteJobStore(settings.data_dir / FILE_NAME)


def cursor_secret(settings: Settings) -> bytes:
    """The configured key, else one generated once and shared through the data dir."""
    if settings.secret_key:
        return settings.secret_key.encode()
    return persistent_secret(settings.data_dir / SECRET_FILE)


class FhirServerApp(Starlette):
    """The Starlette app, with the hottest GET routes answered before its middleware."""

    def __init__(self, hot_routes: HotRoutes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot_routes = hot_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self  # as Starlette sets it: handlers find the state through it
        if not await self.hot_routes.answer(scope, receive, send):
            await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, store: JobStore | None = None) -> FhirServerApp:
    settings = settings or Settings()
    job_store = with_deadline(store or build_store(settings), settings.store_timeout)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opening = await open_store(job_store)
        if settings.load:
            await load_paths(job_store, settings.load)
        sweeper = None
        if settings.retention is not None:
            sweeper = asyncio.create_task(
                sweep(job_store, settings.retention, settings.retention_interval)
            )
        yield
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        if opening is not None:
            opening.cancel()
        await job_store.close()
        if access_log is not None:
            access_log.flush()

    access_log = AccessLog() if settings.access_log else None
    app_metrics = metrics.Metrics()
    telemetry = Telemetry(app_metrics, access_log)
    verifier = token_verifier(settings)
    # The router tries routes in order: the busiest (reads and searches) come first.
    routes = [
        *fhir.routes(),
        *health.routes(),
        *metrics.routes(),
        *writes.routes(),
        *cancel.routes(),
        *status.routes(),
        *ehealth.routes(),
        *openapi.routes(),
    ]
    guard_routes(routes)  # each route's scope, from fhir_server/auth/policy.py
    app = FhirServerApp(
        HotRoutes(routes, fhir.HOT_ROUTES, verifier, telemetry),
        routes=routes,
        middleware=[
            Middleware(TelemetryMiddleware, telemetry),
            Middleware(AuthenticationMiddleware, verifier=verifier),
            Middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.metrics = app_metrics
    app.state.access_log = access_log
    app.state.settings = settings
    app.state.store = job_store
    app.state.secret = cursor_secret(settings)
    app.state.search_limits = SearchLimits(
        settings.default_page_size, settings.max_page_size, settings.max_offset
    )
    app.state.input_limits = InputLimits(
        settings.max_body_bytes,
        settings.max_json_depth,
        settings.max_search_parameters,
        settings.max_search_values,
        settings.max_search_value_length,
    )
    app.state.search_parser = fhir.SearchParser(
        app.state.search_limits, app.state.input_limits, app.state.secret
    )
    return app
