"""Create (POST), update (PUT) and delete (DELETE) through HTTP."""

import asyncio

import httpx
import pytest

from fhir_server.search.query import JobQuery
from fhir_server.storage.base import JobStore

from .conftest import BASE, make_job, put_job

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def new_job(**fields: object) -> dict[str, object]:
    return make_job(id=None, **fields)


async def test_post_creates_version_1_with_location_and_etag(
    client: httpx.AsyncClient, store: JobStore
):
    response = await client.post("AsyncJob", json=new_job(), headers=FHIR_JSON)
    assert response.status_code == 201
    body = response.json()
    job_id = body["id"]
    assert response.headers["location"] == f"{BASE}/AsyncJob/{job_id}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith(" GMT")
    assert body["meta"]["versionId"] == "1"
    stored = await store.get(job_id)
    assert stored is not None and stored.resource == body


async def test_post_ignores_a_client_id_and_assigns_one(client: httpx.AsyncClient):
    response = await client.post("AsyncJob", json=make_job(id="mine"), headers=FHIR_JSON)
    assert response.status_code == 201
    assert response.json()["id"] != "mine"


async def test_post_defaults_request_time_to_now(client: httpx.AsyncClient):
    response = await client.post("AsyncJob", json=new_job(requestTime=None), headers=FHIR_JSON)
    assert response.status_code == 201
    body = response.json()
    assert body["requestTime"] <= body["meta"]["lastUpdated"]
    assert body["requestTime"][:10] == body["meta"]["lastUpdated"][:10]


async def test_post_accepts_application_json(client: httpx.AsyncClient):
    response = await client.post(
        "AsyncJob", json=new_job(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201


async def test_post_prefer_return_minimal_has_no_body(client: httpx.AsyncClient):
    headers = {**FHIR_JSON, "Prefer": "return=minimal"}
    response = await client.post("AsyncJob", json=new_job(), headers=headers)
    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["location"].endswith("/_history/1")
    assert response.headers["etag"] == 'W/"1"'


async def test_post_prefer_return_operation_outcome(client: httpx.AsyncClient):
    headers = {**FHIR_JSON, "Prefer": "return=OperationOutcome"}
    response = await client.post("AsyncJob", json=new_job(), headers=headers)
    assert response.status_code == 201
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "information"


async def test_post_prefer_return_representation_returns_the_job(client: httpx.AsyncClient):
    headers = {**FHIR_JSON, "Prefer": "return=representation"}
    response = await client.post("AsyncJob", json=new_job(), headers=headers)
    assert response.json()["resourceType"] == "AsyncJob"


async def test_post_of_a_job_that_is_not_accepted_is_422(
    client: httpx.AsyncClient, store: JobStore
):
    response = await client.post("AsyncJob", json=new_job(status="completed"), headers=FHIR_JSON)
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["code"] == "business-rule"
    assert issue["expression"] == ["AsyncJob.status"]
    assert await store.count(JobQuery()) == 0


async def test_post_with_another_media_type_is_415(client: httpx.AsyncClient, store: JobStore):
    response = await client.post(
        "AsyncJob", content=b"<AsyncJob/>", headers={"Content-Type": "application/xml"}
    )
    assert response.status_code == 415
    assert response.json()["issue"][0]["code"] == "not-supported"
    assert await store.count(JobQuery()) == 0


async def test_post_of_malformed_json_is_400(client: httpx.AsyncClient, store: JobStore):
    response = await client.post("AsyncJob", content=b'{"resourceType": ', headers=FHIR_JSON)
    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "structure"
    assert await store.count(JobQuery()) == 0


async def test_post_of_invalid_job_reports_each_problem_with_its_path(
    client: httpx.AsyncClient, store: JobStore
):
    job = new_job(request=None, status="running", dataVersion="x")
    response = await client.post("AsyncJob", json=job, headers=FHIR_JSON)
    assert response.status_code == 400
    expressions = {e for i in response.json()["issue"] for e in i.get("expression", [])}
    assert {"AsyncJob.request", "AsyncJob.status", "AsyncJob.dataVersion"} <= expressions
    assert await store.count(JobQuery()) == 0


async def test_put_updates_and_returns_200_with_version_2(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    job = make_job(id="job-1", output=_progress("50%"))
    response = await client.put("AsyncJob/job-1", json=job, headers=FHIR_JSON)
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"2"'
    assert response.headers["location"] == f"{BASE}/AsyncJob/job-1/_history/2"
    assert response.json()["output"] == _progress("50%")


@pytest.mark.parametrize(
    ("prefer", "answer"),
    [
        ("return=minimal", None),
        ("return=OperationOutcome", "OperationOutcome"),
        ("return=representation", "AsyncJob"),
    ],
)
async def test_put_honours_prefer_return(
    client: httpx.AsyncClient, store: JobStore, prefer: str, answer: str | None
):
    await put_job(store, id="job-1")
    job = make_job(id="job-1", output=_progress("50%"))
    response = await client.put("AsyncJob/job-1", json=job, headers={**FHIR_JSON, "Prefer": prefer})
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"2"'
    if answer is None:
        assert response.content == b""
    else:
        assert response.json()["resourceType"] == answer


async def test_put_of_an_unknown_id_creates_it_with_201(client: httpx.AsyncClient):
    response = await client.put("AsyncJob/new-1", json=make_job(id="new-1"), headers=FHIR_JSON)
    assert response.status_code == 201
    assert response.headers["location"] == f"{BASE}/AsyncJob/new-1/_history/1"


async def test_put_with_a_different_body_id_is_400(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    response = await client.put("AsyncJob/job-1", json=make_job(id="job-2"), headers=FHIR_JSON)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["AsyncJob.id"]
    assert len(await store.history("job-1")) == 1
    assert await store.get("job-2") is None


async def test_put_without_body_id_is_400(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    response = await client.put("AsyncJob/job-1", json=make_job(id=None), headers=FHIR_JSON)
    assert response.status_code == 400
    assert len(await store.history("job-1")) == 1


async def test_put_with_current_if_match_updates(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    headers = {**FHIR_JSON, "If-Match": 'W/"1"'}
    job = make_job(id="job-1", output=_progress("1"))
    response = await client.put("AsyncJob/job-1", json=job, headers=headers)
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"2"'


async def test_put_with_stale_if_match_is_412_and_changes_nothing(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    await put_job(store, id="job-1", output=_progress("10%"))
    headers = {**FHIR_JSON, "If-Match": 'W/"1"'}
    job = make_job(id="job-1", output=_progress("99%"))
    response = await client.put("AsyncJob/job-1", json=job, headers=headers)
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"
    current = await store.get("job-1")
    assert current is not None and current.version == 2
    assert current.resource is not None and current.resource["output"] == _progress("10%")


async def test_put_with_malformed_if_match_is_400(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    headers = {**FHIR_JSON, "If-Match": "yesterday"}
    response = await client.put("AsyncJob/job-1", json=make_job(id="job-1"), headers=headers)
    assert response.status_code == 400
    assert len(await store.history("job-1")) == 1


async def test_put_that_changes_nothing_stores_no_new_version(
    client: httpx.AsyncClient, store: JobStore
):
    record = await put_job(store, id="job-1")
    assert record.resource is not None
    response = await client.put("AsyncJob/job-1", json=record.resource, headers=FHIR_JSON)
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"1"'
    assert len(await store.history("job-1")) == 1


async def test_put_of_invalid_job_is_400_and_changes_nothing(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    job = make_job(id="job-1", requestTime="yesterday")
    response = await client.put("AsyncJob/job-1", json=job, headers=FHIR_JSON)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["AsyncJob.requestTime"]
    assert len(await store.history("job-1")) == 1


async def test_put_of_an_unknown_status_code_is_422_and_changes_nothing(
    client: httpx.AsyncClient, store: JobStore
):
    """Readable as an AsyncJob, but the code breaks the status binding: unprocessable."""
    await put_job(store, id="job-1")
    job = make_job(id="job-1", status="finished")
    response = await client.put("AsyncJob/job-1", json=job, headers=FHIR_JSON)
    assert response.status_code == 422
    assert response.json()["issue"][0]["code"] == "code-invalid"
    assert response.json()["issue"][0]["expression"] == ["AsyncJob.status"]
    assert len(await store.history("job-1")) == 1


async def test_twenty_concurrent_puts_with_the_same_if_match_let_exactly_one_win(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    headers = {**FHIR_JSON, "If-Match": 'W/"1"'}

    async def attempt(n: int) -> int:
        job = make_job(id="job-1", output=_progress(f"writer {n}"))
        return (await client.put("AsyncJob/job-1", json=job, headers=headers)).status_code

    codes = await asyncio.gather(*(attempt(n) for n in range(20)))
    assert sorted(codes) == [200] + [412] * 19
    current = await store.get("job-1")
    assert current is not None and current.version == 2


async def test_delete_answers_204_and_read_then_answers_410(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    response = await client.delete("AsyncJob/job-1")
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get("AsyncJob/job-1")).status_code == 410


async def test_deleted_job_is_no_longer_found_by_search(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    await put_job(store, id="job-2")
    await client.delete("AsyncJob/job-1")
    bundle = (await client.get("AsyncJob")).json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["job-2"]
    assert bundle["total"] == 1


async def test_history_of_a_deleted_job_lists_every_version(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    await put_job(store, id="job-1", output=_progress("1"))
    await client.delete("AsyncJob/job-1")
    bundle = (await client.get("AsyncJob/job-1/_history")).json()
    assert [e["request"]["method"] for e in bundle["entry"]] == ["DELETE", "PUT", "POST"]


async def test_delete_of_an_unknown_job_is_404(client: httpx.AsyncClient):
    response = await client.delete("AsyncJob/nope")
    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


async def test_delete_with_stale_if_match_is_412_and_keeps_the_job(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    await put_job(store, id="job-1", output=_progress("1"))
    response = await client.delete("AsyncJob/job-1", headers={"If-Match": 'W/"1"'})
    assert response.status_code == 412
    current = await store.get("job-1")
    assert current is not None and not current.deleted and current.version == 2


async def test_delete_of_a_deleted_job_is_204_without_a_new_version(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    await client.delete("AsyncJob/job-1")
    assert (await client.delete("AsyncJob/job-1")).status_code == 204
    assert len(await store.history("job-1")) == 2


async def test_put_recreates_a_deleted_job(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    await client.delete("AsyncJob/job-1")
    response = await client.put("AsyncJob/job-1", json=make_job(id="job-1"), headers=FHIR_JSON)
    assert response.status_code == 201
    assert response.headers["etag"] == 'W/"3"'


async def test_unsupported_method_on_an_instance_is_405(client: httpx.AsyncClient):
    response = await client.patch("AsyncJob/job-1", json={}, headers=FHIR_JSON)
    assert response.status_code == 405
    assert response.json()["issue"][0]["code"] == "not-supported"
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "PUT", "DELETE"}


async def test_capability_statement_lists_the_write_interactions(client: httpx.AsyncClient):
    resource = (await client.get("metadata")).json()["rest"][0]["resource"][0]
    codes = {i["code"] for i in resource["interaction"]}
    assert {"create", "update", "delete"} <= codes


async def test_created_job_records_the_token_subject_as_owner(
    client: httpx.AsyncClient, store: JobStore
):
    response = await client.post("AsyncJob", json=new_job(), headers=FHIR_JSON)
    stored = await store.get(response.json()["id"])
    assert stored is not None and stored.owner == "admin"


async def test_put_keeps_the_stored_owner(client: httpx.AsyncClient, store: JobStore):
    await store.save(make_job(id="job-1"), expected_version=0, owner="practitioner-7")
    job = make_job(id="job-1", output=_progress("1"))
    await client.put("AsyncJob/job-1", json=job, headers=FHIR_JSON)
    stored = await store.get("job-1")
    assert stored is not None and stored.owner == "practitioner-7"


def _progress(text: str) -> dict[str, object]:
    return {"resourceType": "Parameters", "parameter": [{"name": "progress", "valueString": text}]}


async def test_put_with_another_media_type_is_415_and_changes_nothing(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1")
    job = make_job(id="job-1", status="cancelled")
    response = await client.put("AsyncJob/job-1", json=job, headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert len(await store.history("job-1")) == 1
