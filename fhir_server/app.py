"""Builds the Starlette application from settings: the only place that wires things."""

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette

from .api import cancel, ehealth, fhir, health, openapi, status, writes
from .api.body_limit import BodyLimitMiddleware
from .api.errors import EXCEPTION_HANDLERS
from .api.limits import InputLimits
from .api.request_id import RequestIdMiddleware
from .auth.setup import install_auth
from .config import Settings
from .jobs.retention import sweep
from .loader import load_paths
from .search.parse import SearchLimits
from .storage.base import JobStore

log = logging.getLogger("fhir_server")


def build_store(settings: Settings) -> JobStore:
    """MongoDB when a URI is configured, else the in-memory stand-in (until SQLite lands)."""
    from .storage.mongo import MongoJobStore

    if settings.mongodb_uri:
        from motor.motor_asyncio import AsyncIOMotorClient

        client: Any = AsyncIOMotorClient(settings.mongodb_uri, tz_aware=False)
        return MongoJobStore(client[settings.mongodb_database])
    from mongomock_motor import AsyncMongoMockClient

    log.warning("no MongoDB URI configured: using an in-memory database, lost on restart")
    return MongoJobStore(AsyncMongoMockClient()[settings.mongodb_database])


def create_app(settings: Settings | None = None, store: JobStore | None = None) -> Starlette:
    settings = settings or Settings()
    job_store = store or build_store(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await job_store.open()
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
        await job_store.close()

    app = Starlette(
        routes=[
            *health.routes(),
            *fhir.routes(),
            *writes.routes(),
            *cancel.routes(),
            *status.routes(),
            *ehealth.routes(),
            *openapi.routes(),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = job_store
    app.state.secret = (settings.secret_key or secrets.token_hex(32)).encode()
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
    # Outermost last: request id, then authentication, then the body limit.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    install_auth(app, settings)
    app.add_middleware(RequestIdMiddleware)
    return app
