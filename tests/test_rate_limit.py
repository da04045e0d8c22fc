"""Per-owner request rate limits (FHIR_SERVER_RATE_LIMIT): off by default; over the rate a
request is refused with 429, Retry-After and the error in the path's own shape, before its
handler costs anything. Each owner has its own count; admins have none."""

from pathlib import Path

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.search.query import JobQuery
from fhir_server.storage.base import JobStore

from .conftest import ADMIN_HEADERS, BASE, TEST_JWT_SECRET, MakeClient, bearer, make_job
from .ehealth_helpers import HOST
from .servers import running_server

OWNER_SCOPES = "system/AsyncJob.* job:read"


@pytest.fixture
def settings() -> Settings:
    return Settings(secret_key="test-secret", jwt_secret=TEST_JWT_SECRET, rate_limit="3/minute")


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"].isdigit()
    assert 1 <= int(response.headers["retry-after"]) <= 60


async def test_an_owner_over_the_rate_gets_429_throttled(make_client: MakeClient, store: JobStore):
    async with make_client(sub="alice", scope=OWNER_SCOPES) as alice:
        for _ in range(3):
            assert (await alice.get("AsyncJob?_count=1")).status_code == 200
        refused = await alice.get("AsyncJob?_count=1")
        assert_throttled(refused)
        issue = refused.json()["issue"][0]
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert issue["code"] == "throttled"
        assert "3 per 1 minute" in issue["diagnostics"]
        # Writes are refused before anything is stored.
        assert_throttled(await alice.post("AsyncJob", json=make_job()))
    assert await store.count(JobQuery()) == 0


async def test_each_owner_has_its_own_count_and_admins_none(make_client: MakeClient):
    async with make_client(sub="alice", scope=OWNER_SCOPES) as alice:
        for _ in range(3):
            await alice.get("AsyncJob")
        assert_throttled(await alice.get("AsyncJob"))
    async with make_client(sub="bob", scope=OWNER_SCOPES) as bob:
        assert (await bob.get("AsyncJob")).status_code == 200
    async with make_client() as admin:
        for _ in range(10):
            assert (await admin.get("AsyncJob")).status_code == 200


async def test_the_adapter_answers_429_in_its_envelope(make_client: MakeClient):
    async with make_client(sub="alice", scope=OWNER_SCOPES) as alice:
        for _ in range(3):
            assert (await alice.get(f"{HOST}/Jobs/unknown")).status_code == 404
        refused = await alice.get(f"{HOST}/Jobs/unknown")
    assert_throttled(refused)
    body = refused.json()
    assert body["error"]["type"] == "too_many_requests"
    assert body["meta"]["code"] == 429


async def test_requests_without_a_token_are_not_counted(make_client: MakeClient):
    async with make_client(headers={}) as anonymous:
        for _ in range(5):
            assert (await anonymous.get("AsyncJob")).status_code == 401


async def test_there_is_no_limit_by_default(store: JobStore):
    assert Settings().rate_limit is None
    app = create_app(Settings(secret_key="k", jwt_secret=TEST_JWT_SECRET), store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE + "/", headers=bearer("alice", OWNER_SCOPES)
    ) as alice:
        for _ in range(50):
            assert (await alice.get("AsyncJob")).status_code == 200


def test_a_rate_that_is_not_one_is_refused_at_start():
    with pytest.raises(ValueError, match="is not a rate"):
        Settings(rate_limit="lots")


def test_the_served_app_applies_the_setting(tmp_path: Path):
    with running_server(tmp_path / "data", "--rate-limit", "2/minute") as base:
        owner = bearer("mallory", OWNER_SCOPES)
        with httpx.Client(timeout=10) as client:
            assert client.get(f"{base}/AsyncJob", headers=owner).status_code == 200
            assert client.get(f"{base}/AsyncJob", headers=owner).status_code == 200
            assert_throttled(client.get(f"{base}/AsyncJob", headers=owner))
            assert client.get(f"{base}/AsyncJob", headers=ADMIN_HEADERS).status_code == 200
