"""Read, vread and history through HTTP."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx

from fhir_server.storage.base import JobStore

from .conftest import BASE, put_job


async def test_read_returns_the_stored_job_as_fhir_json(client: httpx.AsyncClient, store: JobStore):
    record = await put_job(store, id="job-1", status="accepted")
    response = await client.get("AsyncJob/job-1")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"
    body = response.json()
    assert body["id"] == "job-1"
    assert body["status"] == "accepted"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"] == record.last_updated
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith(" GMT")


async def test_read_with_current_etag_is_not_modified(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    response = await client.get("AsyncJob/job-1", headers={"If-None-Match": 'W/"1"'})
    assert response.status_code == 304
    assert response.content == b""


async def test_read_with_stale_etag_returns_the_job(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    await put_job(store, id="job-1", status="completed")
    response = await client.get("AsyncJob/job-1", headers={"If-None-Match": 'W/"1"'})
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"


async def test_read_if_modified_since(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    later = format_datetime(datetime.now(UTC) + timedelta(minutes=1), usegmt=True)
    earlier = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)
    assert (
        await client.get("AsyncJob/job-1", headers={"If-Modified-Since": later})
    ).status_code == 304
    assert (
        await client.get("AsyncJob/job-1", headers={"If-Modified-Since": earlier})
    ).status_code == 200


async def test_read_unknown_id_is_404_not_found(client: httpx.AsyncClient):
    response = await client.get("AsyncJob/nope")
    assert response.status_code == 404
    issue = response.json()["issue"][0]
    assert response.json()["resourceType"] == "OperationOutcome"
    assert issue["code"] == "not-found"


async def test_read_malformed_id_is_400_invalid(client: httpx.AsyncClient):
    for bad in ["a" * 65, "has_underscore", "%24ne", "x%20y"]:
        response = await client.get(f"AsyncJob/{bad}")
        assert response.status_code == 400, bad
        assert response.json()["issue"][0]["code"] == "invalid"


async def test_read_deleted_job_is_410(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    await store.delete("job-1", expected_version=1)
    response = await client.get("AsyncJob/job-1")
    assert response.status_code == 410
    assert response.json()["issue"][0]["code"] == "deleted"


async def test_vread_returns_each_version(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1", status="accepted")
    await put_job(store, id="job-1", status="completed")
    first = await client.get("AsyncJob/job-1/_history/1")
    second = await client.get("AsyncJob/job-1/_history/2")
    assert first.json()["status"] == "accepted"
    assert second.json()["status"] == "completed"
    assert first.headers["etag"] == 'W/"1"'
    assert (await client.get("AsyncJob/job-1/_history/3")).status_code == 404
    assert (await client.get("AsyncJob/job-1/_history/x")).status_code == 400


async def test_vread_of_a_deletion_is_410(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    await store.delete("job-1", expected_version=1)
    assert (await client.get("AsyncJob/job-1/_history/1")).status_code == 200
    assert (await client.get("AsyncJob/job-1/_history/2")).status_code == 410


async def test_history_lists_every_version_newest_first(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1", status="accepted")
    await put_job(store, id="job-1", status="completed")
    await store.delete("job-1", expected_version=2)
    response = await client.get("AsyncJob/job-1/_history")
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["type"] == "history"
    assert bundle["total"] == 3
    methods = [e["request"]["method"] for e in bundle["entry"]]
    assert methods == ["DELETE", "PUT", "POST"]
    assert "resource" not in bundle["entry"][0]
    assert bundle["entry"][1]["resource"]["meta"]["versionId"] == "2"
    assert bundle["entry"][2]["fullUrl"] == f"{BASE}/AsyncJob/job-1"
    assert bundle["link"][0]["relation"] == "self"


async def test_history_of_unknown_job_is_404(client: httpx.AsyncClient):
    assert (await client.get("AsyncJob/nope/_history")).status_code == 404
