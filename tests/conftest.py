"""Shared fixtures: a store per backend, an app on it, an HTTP client through ASGI."""

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from mongomock_motor import AsyncMongoMockClient

from fhir_server.app import create_app
from fhir_server.auth.tokens import FULL_SCOPES, mint
from fhir_server.config import Settings
from fhir_server.storage.base import JobRecord, JobStore
from fhir_server.storage.mongo import MongoJobStore
from fhir_server.storage.sqlite import SqliteJobStore

# No test may write into the working tree's ./data: default settings point elsewhere.
os.environ.setdefault("FHIR_SERVER_DATA_DIR", tempfile.mkdtemp(prefix="fhir-server-tests-"))

BASE = "http://testserver/fhir/R4"
TEST_JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs256"
ADMIN_TOKEN_SCOPES = FULL_SCOPES  # system/*.* (the admin scope) and both eHealth scopes


def token(sub: str = "admin", scope: str = ADMIN_TOKEN_SCOPES, **claims: Any) -> str:
    """A real HS256 JWT signed with the test secret; claims override (None removes)."""
    import jwt

    encoded = mint(TEST_JWT_SECRET.encode(), sub, scope, timedelta(hours=1))
    payload = jwt.decode(encoded, options={"verify_signature": False})
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, TEST_JWT_SECRET, algorithm="HS256")


def bearer(sub: str = "admin", scope: str = ADMIN_TOKEN_SCOPES, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, scope, **claims)}"}


ADMIN_HEADERS = bearer()


def make_job(**fields: Any) -> dict[str, Any]:
    """A valid AsyncJob; keyword arguments override or add elements (None removes)."""
    job: dict[str, Any] = {
        "resourceType": "AsyncJob",
        "id": str(uuid.uuid4()),
        "status": "accepted",
        "requestTime": "2026-01-01T00:00:00.000Z",
        "request": "https://example.org/fhir/R4/$export",
    }
    job.update(fields)
    return {k: v for k, v in job.items() if v is not None}


async def put_job(store: JobStore, **fields: Any) -> JobRecord:
    """Store a job (a new version if its id exists) and return the stored record."""
    job = make_job(**fields)
    current = await store.get(job["id"])
    return await store.save(job, expected_version=current.version if current else 0)


# Opt-in: the same suite against a real MongoDB, e.g. mongodb://localhost:27017
REAL_MONGODB_URI = os.environ.get("FHIR_SERVER_TEST_MONGODB_URI")
BACKENDS = ["mongo", "sqlite", *(["mongodb-real"] if REAL_MONGODB_URI else [])]


async def _mongo_store(backend: str) -> tuple[JobStore, object]:
    name = f"test_{uuid.uuid4().hex}"
    if backend == "mongodb-real":
        from motor.motor_asyncio import AsyncIOMotorClient

        client: object = AsyncIOMotorClient(REAL_MONGODB_URI)
    else:
        client = AsyncMongoMockClient()
    return MongoJobStore(client[name]), client  # type: ignore[index]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    """Every storage and HTTP test runs once per backend."""
    if request.param == "sqlite":
        sqlite_store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        await sqlite_store.open()
        yield sqlite_store
        await sqlite_store.close()
        return
    job_store, client = await _mongo_store(request.param)
    await job_store.open()
    yield job_store
    if request.param == "mongodb-real":
        await client.drop_database(job_store._db.name)  # type: ignore[attr-defined]
    await job_store.close()


@pytest.fixture(autouse=True)
def server_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Apps built in tests sign tokens with the test secret and keep files in a temp dir."""
    monkeypatch.setenv("FHIR_SERVER_JWT_SECRET", TEST_JWT_SECRET)
    monkeypatch.setenv("FHIR_SERVER_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def settings() -> Settings:
    return Settings(secret_key="test-secret", jwt_secret=TEST_JWT_SECRET)


@asynccontextmanager
async def other_stores_open(app: Any) -> AsyncIterator[None]:
    """The stores of the kinds besides AsyncJob (Subscription), which the app's lifespan
    would open: the fixtures' apps run without it, on the `store` fixture for AsyncJob."""
    others = [s for t, s in app.state.stores.items() if t != "AsyncJob"]
    for other in others:
        await other.open()
    try:
        yield
    finally:
        for other in others:
            await other.close()


@pytest.fixture
async def client(store: JobStore, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An admin: a valid token with the admin scope and both eHealth scopes."""
    app = create_app(settings, store=store)
    transport = httpx.ASGITransport(app=app)
    async with (
        other_stores_open(app),
        httpx.AsyncClient(transport=transport, base_url=BASE + "/", headers=ADMIN_HEADERS) as http,
    ):
        yield http


MakeClient = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def make_client(store: JobStore, settings: Settings) -> AsyncIterator[MakeClient]:
    """Clients of one app on `store`: make_client(sub=..., scope=..., headers=...) sends a
    token for that subject and scope; make_client(headers={}) sends none."""
    app = create_app(settings, store=store)

    def make(
        sub: str = "admin",
        scope: str = ADMIN_TOKEN_SCOPES,
        headers: dict[str, str] | None = None,
        **claims: Any,
    ) -> httpx.AsyncClient:
        sent = bearer(sub, scope, **claims) if headers is None else headers
        transport = httpx.ASGITransport(app=app)
        return httpx.AsyncClient(transport=transport, base_url=BASE + "/", headers=sent)

    async with other_stores_open(app):
        yield make


def has_transactions(store: JobStore) -> bool:
    """Whether save_many (and so a transaction Bundle) can run on `store`: SQLite always;
    MongoDB on a replica set (the opt-in real suite), never on mongomock, which has no
    sessions: there a transaction must be refused with nothing written."""
    return not isinstance(store, MongoJobStore) or REAL_MONGODB_URI is not None
