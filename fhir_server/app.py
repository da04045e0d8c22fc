"""Builds the Starlette application from settings: the only place that wires things."""

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette

from .api import fhir, health
from .api.errors import EXCEPTION_HANDLERS
from .config import Settings
from .loader import load_paths
from .search.parse import SearchLimits
from .secrets_file import persistent_secret
from .storage.base import JobStore

log = logging.getLogger("fhir_server")
SECRET_FILE = "secret-key"


def build_store(settings: Settings) -> JobStore:
    """MongoDB when a URI is configured, else the embedded SQLite file in the data dir."""
    if settings.mongodb_uri:
        from motor.motor_asyncio import AsyncIOMotorClient

        from .storage.mongo import MongoJobStore

        client: Any = AsyncIOMotorClient(settings.mongodb_uri, tz_aware=False)
        return MongoJobStore(client[settings.mongodb_database])
    from .storage.sqlite import FILE_NAME, SqliteJobStore

    return SqliteJobStore(settings.data_dir / FILE_NAME)


def cursor_secret(settings: Settings) -> bytes:
    """The configured key, else one generated once and shared through the data dir."""
    if settings.secret_key:
        return settings.secret_key.encode()
    return persistent_secret(settings.data_dir / SECRET_FILE)


def create_app(settings: Settings | None = None, store: JobStore | None = None) -> Starlette:
    settings = settings or Settings()
    job_store = store or build_store(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await job_store.open()
        if settings.load:
            await load_paths(job_store, settings.load)
        yield
        await job_store.close()

    app = Starlette(
        routes=[*health.routes(), *fhir.routes()],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = job_store
    app.state.secret = cursor_secret(settings)
    app.state.search_limits = SearchLimits(
        settings.default_page_size, settings.max_page_size, settings.max_offset
    )
    return app
