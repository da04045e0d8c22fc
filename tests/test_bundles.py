"""batch and transaction Bundles at the base (POST /fhir/R4): every single-write rule holds
per entry; a transaction stores all of its writes or none; a batch answers each entry."""

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.config import Settings
from fhir_server.storage.base import JobStore

from .auth_helpers import JOB_ID, owned_job
from .conftest import ADMIN_HEADERS, BASE, MakeClient, has_transactions, make_job, token
from .node_clients import run_node
from .servers import running_server

FHIR_JSON = {"Content-Type": "application/fhir+json"}
ALICE = "system/AsyncJob.cruds"  # every right on AsyncJob, not an admin


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource, "request": {"method": "POST", "url": "AsyncJob"}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def put(resource: dict[str, Any], if_match: str | None = None) -> dict[str, Any]:
    request = {"method": "PUT", "url": f"AsyncJob/{resource['id']}"}
    if if_match:
        request["ifMatch"] = if_match
    return {"resource": resource, "request": request}


def delete(job_id: str) -> dict[str, Any]:
    return {"request": {"method": "DELETE", "url": f"AsyncJob/{job_id}"}}


def get(job_id: str) -> dict[str, Any]:
    return {"request": {"method": "GET", "url": f"AsyncJob/{job_id}"}}


def new_job(**fields: Any) -> dict[str, Any]:
    return make_job(id=None, **fields)


async def submit(http: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await http.post(BASE, json=body, headers={**FHIR_JSON, **headers})


async def total(http: httpx.AsyncClient) -> int:
    response = await http.get(f"{BASE}/AsyncJob", params={"_total": "accurate", "_count": 1})
    return int(response.json()["total"])


def refused_without_transactions(response: httpx.Response) -> None:
    """What mongomock (MongoDB without a replica set) answers any transaction that writes."""
    assert response.status_code == 501
    issue = response.json()["issue"][0]
    assert issue["code"] == "not-supported"
    assert "replica set" in issue["diagnostics"]


async def test_a_transaction_creates_resolves_urn_uuids_and_answers_in_entry_order(
    client: httpx.AsyncClient, store: JobStore
):
    existing = await owned_job(store, None)
    parent = "urn:uuid:6f1b3c0e-52a5-4a3c-9d8e-7b1a2c3d4e5f"
    child = new_job(
        output={
            "resourceType": "Parameters",
            "parameter": [{"name": "parent", "valueReference": {"reference": parent}}],
        }
    )
    body = bundle(
        "transaction",
        post(child),
        put({**make_job(id=existing.id), "status": "completed"}, if_match='W/"1"'),
        get(existing.id),
        post(new_job(), full_url=parent),
    )
    response = await submit(client, body)
    if not has_transactions(store):
        refused_without_transactions(response)
        assert await total(client) == 1
        return

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["201 Created", "200 OK", "200 OK", "201 Created"]
    created_child, updated, read, created_parent = answer["entry"]
    parent_id = created_parent["resource"]["id"]
    assert created_parent["response"]["location"] == f"AsyncJob/{parent_id}/_history/1"
    assert created_parent["response"]["etag"] == 'W/"1"'
    assert created_parent["fullUrl"] == f"{BASE}/AsyncJob/{parent_id}"
    assert updated["response"]["etag"] == 'W/"2"'
    assert read["resource"]["status"] == "completed"  # GETs run after the writes
    reference = created_child["resource"]["output"]["parameter"][0]["valueReference"]
    assert reference == {"reference": f"AsyncJob/{parent_id}"}
    stored = (await client.get(created_child["response"]["location"])).json()
    assert stored["output"]["parameter"][0]["valueReference"] == reference
    assert stored["meta"]["lastUpdated"] == created_child["response"]["lastModified"]
    assert await total(client) == 3


async def test_a_transaction_with_one_invalid_entry_stores_nothing_and_names_it(
    client: httpx.AsyncClient, store: JobStore
):
    existing = await owned_job(store, None)
    body = bundle(
        "transaction",
        post(new_job()),
        put({**make_job(id=existing.id), "status": "completed"}),
        post(new_job(status="completed")),  # a new job must be accepted
        delete(existing.id),
    )
    response = await submit(client, body)

    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["code"] == "business-rule"
    assert issue["expression"] == ["Bundle.entry[2].resource.status"]
    assert issue["diagnostics"].startswith("Bundle.entry[2]: ")
    assert await total(client) == 1
    assert [v.version for v in await store.history(existing.id)] == [1]


async def test_an_entry_that_is_not_a_resource_of_its_url_is_named(client: httpx.AsyncClient):
    body = bundle(
        "transaction", post(new_job()), {"request": {"method": "POST", "url": "AsyncJob"}}
    )
    response = await submit(client, body)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[1]"]
    assert await total(client) == 0


async def test_concurrent_transactions_on_one_job_one_wins_the_other_stores_nothing(
    client: httpx.AsyncClient, store: JobStore
):
    existing = await owned_job(store, None)

    def contender(name: str) -> dict[str, Any]:
        changed = {**make_job(id=existing.id), "status": "cancelled", "type": None}
        changed["request"] = existing.resource["request"]  # type: ignore[index]
        marker = new_job(request=f"https://example.org/fhir/R4/$export?by={name}")
        return bundle("transaction", post(marker), put(changed, if_match='W/"1"'))

    first, second = await asyncio.gather(
        submit(client, contender("first")), submit(client, contender("second"))
    )
    if not has_transactions(store):
        refused_without_transactions(first)
        refused_without_transactions(second)
        assert await total(client) == 1
        return
    assert sorted([first.status_code, second.status_code]) == [200, 412]
    loser = first if first.status_code == 412 else second
    assert loser.json()["issue"][0]["expression"] == ["Bundle.entry[1]"]
    assert [v.version for v in await store.history(existing.id)] == [2, 1]
    assert await total(client) == 2  # the job and the winner's marker, not the loser's


async def test_a_batch_answers_each_entry_on_its_own(client: httpx.AsyncClient, store: JobStore):
    existing = await owned_job(store, None)
    body = bundle(
        "batch",
        post(new_job()),
        post(new_job(status="completed")),
        get("00000000-0000-4000-8000-000000000000"),
        put(make_job(id=existing.id, status="cancelled"), if_match='W/"7"'),
        delete(existing.id),
        {"request": {"method": "PATCH", "url": f"AsyncJob/{existing.id}"}},
    )
    response = await submit(client, body)

    assert response.status_code == 200
    answer = response.json()
    assert answer["type"] == "batch-response"
    entries = answer["entry"]
    assert [e["response"]["status"] for e in entries] == [
        "201 Created",
        "422 Unprocessable Entity",
        "404 Not Found",
        "412 Precondition Failed",
        "204 No Content",
        "400 Bad Request",
    ]
    assert entries[0]["resource"]["status"] == "accepted"
    assert entries[1]["response"]["outcome"]["issue"][0]["code"] == "business-rule"
    assert entries[3]["response"]["outcome"]["issue"][0]["code"] == "conflict"
    assert entries[4]["response"]["etag"] == 'W/"2"'
    assert (await store.get(existing.id)).deleted  # type: ignore[union-attr]
    assert await total(client) == 1  # the created job; the other one is deleted


async def test_entries_touch_only_the_callers_own_jobs(make_client: MakeClient, store: JobStore):
    await owned_job(store, "alice")
    async with make_client(sub="bob", scope=ALICE) as bob:
        batch = await submit(
            bob,
            bundle(
                "batch",
                get(JOB_ID),
                put(make_job(id=JOB_ID)),
                delete(JOB_ID),
            ),
        )
        transaction = await submit(bob, bundle("transaction", post(new_job()), delete(JOB_ID)))
        singles = [
            await bob.get(f"{BASE}/AsyncJob/{JOB_ID}"),
            await bob.put(f"{BASE}/AsyncJob/{JOB_ID}", json=make_job(id=JOB_ID), headers=FHIR_JSON),
            await bob.delete(f"{BASE}/AsyncJob/{JOB_ID}"),
        ]

    entries = batch.json()["entry"]
    assert [e["response"]["status"] for e in entries] == [
        "404 Not Found",
        "409 Conflict",
        "404 Not Found",
    ]
    for entry, single in zip(entries, singles, strict=True):
        assert int(entry["response"]["status"][:3]) == single.status_code
        assert entry["response"]["outcome"] == single.json()
    assert transaction.status_code == 404
    assert transaction.json()["issue"][0]["expression"] == ["Bundle.entry[1]"]
    stored = await store.get(JOB_ID)
    assert stored is not None and stored.version == 1 and stored.owner == "alice"
    assert [r.owner for r in await store.search(_everything())] == ["alice"]


def _everything() -> Any:
    from fhir_server.search.query import JobQuery

    return JobQuery()


async def test_each_entry_needs_the_scope_of_its_own_interaction(
    make_client: MakeClient, store: JobStore
):
    await owned_job(store, "carol")
    async with make_client(sub="carol", scope="system/AsyncJob.cr") as carol:
        batch = await submit(carol, bundle("batch", post(new_job()), delete(JOB_ID)))
        transaction = await submit(carol, bundle("transaction", post(new_job()), delete(JOB_ID)))

    entries = batch.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["201 Created", "403 Forbidden"]
    assert "system/AsyncJob.cud" in entries[1]["response"]["outcome"]["issue"][0]["diagnostics"]
    assert transaction.status_code == 403
    assert transaction.json()["issue"][0]["expression"] == ["Bundle.entry[1]"]
    assert not (await store.get(JOB_ID)).deleted  # type: ignore[union-attr]
    assert len(await store.search(_everything())) == 2  # the job and the batch's create


async def test_a_bundle_needs_a_token(make_client: MakeClient):
    async with make_client(headers={}) as anonymous:
        response = await submit(anonymous, bundle("batch", post(new_job())))
    assert response.status_code == 401


@pytest.mark.parametrize("preference", ["minimal", "OperationOutcome", "representation"])
async def test_prefer_return_shapes_each_entry(client: httpx.AsyncClient, preference: str):
    response = await submit(client, bundle("batch", post(new_job())), Prefer=f"return={preference}")
    entry = response.json()["entry"][0]
    assert entry["response"]["status"] == "201 Created"
    assert ("resource" in entry) == (preference == "representation")
    assert ("outcome" in entry["response"]) == (preference == "OperationOutcome")


async def test_more_entries_than_the_limit_is_413(store: JobStore, settings: Settings):
    from fhir_server.app import create_app

    limited = settings.model_copy(update={"max_bundle_entries": 2})
    app = create_app(limited, store=store)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), headers=ADMIN_HEADERS
    ) as http:
        response = await submit(http, bundle("batch", *(post(new_job()) for _ in range(3))))
        assert response.status_code == 413
        assert response.json()["issue"][0]["code"] == "too-costly"
        assert await total(http) == 0


async def test_the_json_limits_hold_for_each_entry(client: httpx.AsyncClient):
    """A Bundle may hold more values than one resource may (1,000 entries), but each entry's
    resource is held to the limits of a single write."""
    deep: dict[str, Any] = {}
    for _ in range(70):
        deep = {"nested": deep}
    body = bundle("transaction", post(new_job()), post(new_job(extension=deep)))
    response = await submit(client, body)
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["code"] == "structure"
    assert issue["expression"] == ["Bundle.entry[1]"]
    assert await total(client) == 0
    many = await submit(client, bundle("batch", *(post(new_job()) for _ in range(1000))))
    assert many.status_code == 200
    assert len(many.json()["entry"]) == 1000


async def test_only_batch_and_transaction_bundles_are_taken(client: httpx.AsyncClient):
    response = await submit(client, {"resourceType": "Bundle", "type": "collection"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Bundle.type"]


async def test_the_base_route_shadows_nothing_and_is_declared(client: httpx.AsyncClient):
    metadata = await client.get(f"{BASE}/metadata")
    assert metadata.status_code == 200
    interactions = metadata.json()["rest"][0]["interaction"]
    assert interactions == [{"code": "transaction"}, {"code": "batch"}]
    created = await client.post(f"{BASE}/AsyncJob", json=new_job(), headers=FHIR_JSON)
    assert created.status_code == 201


def test_fhir_kit_client_submits_a_transaction_to_a_server_process(tmp_path: Path):
    """A real client over real HTTP: fhir-kit-client's transaction(), then batch()."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    parent = "urn:uuid:0b5c9f0e-4a57-4b8e-9d6a-1f2e3d4c5b6a"
    child = new_job(
        output={
            "resourceType": "Parameters",
            "parameter": [{"name": "parent", "valueReference": {"reference": parent}}],
        }
    )
    with running_server(data_dir) as base:
        sent = {
            "baseUrl": base,
            "token": token(),
            "bundle": bundle("transaction", post(child), post(new_job(), full_url=parent)),
        }
        answer = run_node("transaction.mjs", sent)["response"]
        assert answer["type"] == "transaction-response"
        assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created"] * 2
        parent_id = answer["entry"][1]["resource"]["id"]
        stored = httpx.get(
            f"{base}/{answer['entry'][0]['response']['location']}", headers=ADMIN_HEADERS
        ).json()
        assert stored["output"]["parameter"][0]["valueReference"]["reference"] == (
            f"AsyncJob/{parent_id}"
        )
        failing = {**sent, "bundle": bundle("transaction", post(new_job()), post({"x": 1}))}
        refused = run_node("transaction.mjs", failing)
        assert refused["status"] == 400
        assert refused["outcome"]["issue"][0]["expression"] == ["Bundle.entry[1]"]
        batch = {**sent, "bundle": bundle("batch", post(new_job()), get(parent_id))}
        statuses = [
            e["response"]["status"] for e in run_node("transaction.mjs", batch)["response"]["entry"]
        ]
        assert statuses == ["201 Created", "200 OK"]
        everything = httpx.get(
            f"{base}/AsyncJob", params={"_total": "accurate"}, headers=ADMIN_HEADERS
        ).json()
        assert everything["total"] == 3  # the transaction's two and the batch's one
