"""History through HTTP: each entry's request as the client sent it (instance and type), and
the type's history (GET AsyncJob/_history): newest first, _since, _count, paging, owners."""

import asyncio
from typing import Any

import httpx
import pytest

from fhir_server.jobs import JobService
from fhir_server.storage.base import JobStore

from .conftest import BASE, MakeClient, make_job, put_job

FHIR_JSON = {"Content-Type": "application/fhir+json"}
EVERYTHING = "system/AsyncJob.cruds"  # every right, not an admin


def requests(bundle: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(request.method, request.url, response.status) of each entry."""
    return [
        (e["request"]["method"], e["request"]["url"], e["response"]["status"])
        for e in bundle.get("entry", [])
    ]


async def post_job(http: httpx.AsyncClient, **fields: Any) -> str:
    job = make_job(**fields)
    del job["id"]
    response = await http.post("AsyncJob", json=job, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_a_created_job_is_recorded_as_a_post_of_the_type(client: httpx.AsyncClient):
    job_id = await post_job(client)
    done = make_job(id=job_id, status="completed")
    assert (await client.put(f"AsyncJob/{job_id}", json=done, headers=FHIR_JSON)).is_success
    assert (await client.delete(f"AsyncJob/{job_id}")).status_code == 204
    bundle = (await client.get(f"AsyncJob/{job_id}/_history")).json()
    assert requests(bundle) == [
        ("DELETE", f"AsyncJob/{job_id}", "204 No Content"),
        ("PUT", f"AsyncJob/{job_id}", "200 OK"),
        ("POST", "AsyncJob", "201 Created"),
    ]
    assert [e["fullUrl"] for e in bundle["entry"]] == [f"{BASE}/AsyncJob/{job_id}"] * 3


async def test_a_put_that_created_a_job_is_recorded_as_a_put(client: httpx.AsyncClient):
    created = await client.put("AsyncJob/by-put", json=make_job(id="by-put"), headers=FHIR_JSON)
    assert created.status_code == 201
    await client.delete("AsyncJob/by-put")
    again = await client.put("AsyncJob/by-put", json=make_job(id="by-put"), headers=FHIR_JSON)
    assert again.status_code == 201  # a deleted id written again: created again
    bundle = (await client.get("AsyncJob/by-put/_history")).json()
    assert requests(bundle) == [
        ("PUT", "AsyncJob/by-put", "201 Created"),
        ("DELETE", "AsyncJob/by-put", "204 No Content"),
        ("PUT", "AsyncJob/by-put", "201 Created"),
    ]


async def test_a_producers_writes_are_a_post_then_puts(client: httpx.AsyncClient, store: JobStore):
    jobs = JobService(store)
    job = await jobs.submit("https://example.org/fhir/R4/$export", owner="admin")
    await jobs.report_progress(job.id, "1 of 2")
    await jobs.complete(job.id, [])
    bundle = (await client.get(f"AsyncJob/{job.id}/_history")).json()
    assert [(m, u) for m, u, _ in requests(bundle)] == [
        ("PUT", f"AsyncJob/{job.id}"),
        ("PUT", f"AsyncJob/{job.id}"),
        ("POST", "AsyncJob"),
    ]


# --- GET AsyncJob/_history -------------------------------------------------------------


async def test_the_type_history_lists_every_version_of_every_job_newest_first(
    client: httpx.AsyncClient,
):
    first = await post_job(client)
    second = await post_job(client)
    done = make_job(id=first, status="completed")
    await client.put(f"AsyncJob/{first}", json=done, headers=FHIR_JSON)
    await client.delete(f"AsyncJob/{second}")
    response = await client.get("AsyncJob/_history")
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "history"
    assert "total" not in bundle  # counting every version would cost more than the page
    assert requests(bundle) == [
        ("DELETE", f"AsyncJob/{second}", "204 No Content"),
        ("PUT", f"AsyncJob/{first}", "200 OK"),
        ("POST", "AsyncJob", "201 Created"),
        ("POST", "AsyncJob", "201 Created"),
    ]
    entries = bundle["entry"]
    assert "resource" not in entries[0]
    assert entries[1]["resource"]["status"] == "completed"
    assert [e["fullUrl"] for e in entries[2:]] == [
        f"{BASE}/AsyncJob/{second}",
        f"{BASE}/AsyncJob/{first}",
    ]
    assert [e["response"]["etag"] for e in entries] == ['W/"2"', 'W/"2"', 'W/"1"', 'W/"1"']
    stamps = [e["response"]["lastModified"] for e in entries]
    assert stamps == sorted(stamps, reverse=True)
    assert bundle["link"] == [
        {"relation": "self", "url": f"{BASE}/AsyncJob/_history"},
        {"relation": "first", "url": f"{BASE}/AsyncJob/_history"},
    ]


async def test_an_empty_type_history_has_no_entry_array(client: httpx.AsyncClient):
    bundle = (await client.get("AsyncJob/_history")).json()
    assert bundle["type"] == "history"
    assert "entry" not in bundle  # FHIR JSON has no empty arrays


async def test_since_keeps_the_versions_written_at_or_after_it(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="old")
    await asyncio.sleep(0.01)
    newer = await put_job(store, id="new")
    await put_job(store, id="old", status="completed")
    since = newer.last_updated
    response = await client.get("AsyncJob/_history", params={"_since": since})
    bundle = response.json()
    assert [(e["fullUrl"].rsplit("/", 1)[1], e["response"]["etag"]) for e in bundle["entry"]] == [
        ("old", 'W/"2"'),
        ("new", 'W/"1"'),
    ]
    assert (
        bundle["link"][0]["url"] == f"{BASE}/AsyncJob/_history?_since={since.replace(':', '%3A')}"
    )


async def test_since_in_the_future_answers_no_entries(client: httpx.AsyncClient, store: JobStore):
    await put_job(store, id="job-1")
    bundle = (await client.get("AsyncJob/_history", params={"_since": "2999-01-01"})).json()
    assert "entry" not in bundle


async def test_count_pages_the_type_history_with_next_links(
    client: httpx.AsyncClient, store: JobStore
):
    for n in range(5):
        await put_job(store, id=f"job-{n}")
        await put_job(store, id=f"job-{n}", status="completed")
    seen: list[tuple[str, str]] = []
    url: str | None = f"{BASE}/AsyncJob/_history?_count=3"
    pages = 0
    while url is not None:
        bundle = (await client.get(url)).json()
        pages += 1
        assert len(bundle.get("entry", [])) <= 3
        seen += [(e["fullUrl"], e["response"]["etag"]) for e in bundle.get("entry", [])]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert links["first"] == f"{BASE}/AsyncJob/_history?_count=3"
        url = links.get("next")
    assert pages == 4
    assert len(seen) == len(set(seen)) == 10
    everything = (await client.get("AsyncJob/_history", params={"_count": "100"})).json()
    assert seen == [(e["fullUrl"], e["response"]["etag"]) for e in everything["entry"]]


async def test_a_previous_link_leads_back_to_the_page_before(
    client: httpx.AsyncClient, store: JobStore
):
    for n in range(5):
        await put_job(store, id=f"job-{n}")
    first = (await client.get("AsyncJob/_history", params={"_count": "2"})).json()
    second = (await client.get(_link(first, "next"))).json()
    back = (await client.get(_link(second, "previous"))).json()
    assert [e["fullUrl"] for e in back["entry"]] == [e["fullUrl"] for e in first["entry"]]


def _link(bundle: dict[str, Any], relation: str) -> str:
    return next(link["url"] for link in bundle["link"] if link["relation"] == relation)


async def test_a_non_admin_sees_only_the_versions_of_its_own_jobs(make_client: MakeClient):
    async with (
        make_client(sub="alice", scope=EVERYTHING) as alice,
        make_client(sub="bob", scope=EVERYTHING) as bob,
        make_client() as admin,
    ):
        alices = await post_job(alice)
        bobs = await post_job(bob)
        await bob.delete(f"AsyncJob/{bobs}")
        await admin.put("AsyncJob/unowned", json=make_job(id="unowned"), headers=FHIR_JSON)
        seen_by_alice = (await alice.get("AsyncJob/_history")).json()
        seen_by_bob = (await bob.get("AsyncJob/_history")).json()
        seen_by_admin = (await admin.get("AsyncJob/_history")).json()
    assert [e["fullUrl"] for e in seen_by_alice["entry"]] == [f"{BASE}/AsyncJob/{alices}"]
    assert [e["fullUrl"] for e in seen_by_bob["entry"]] == [f"{BASE}/AsyncJob/{bobs}"] * 2
    assert len(seen_by_admin["entry"]) == 4


async def test_the_type_history_needs_the_search_permission(make_client: MakeClient):
    async with make_client(sub="reader", scope="system/AsyncJob.r") as reader:
        response = await reader.get("AsyncJob/_history")
    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("_since=yesterday", "_since"),
        ("_count=0", "_count"),
        ("_count=-1", "_count"),
        ("_count=%D9%A3", "_count"),  # an Arabic-Indic digit is no number here
        ("_cursor=forged", "_cursor"),
        ("_at=2026", "_at"),
        ("_list=x", "_list"),
        ("status=completed", "status"),
    ],
)
async def test_a_bad_history_parameter_is_a_400_naming_it(
    client: httpx.AsyncClient, query: str, parameter: str
):
    response = await client.get(f"AsyncJob/_history?{query}")
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [parameter]


async def test_a_cursor_of_a_search_is_refused_by_the_history(
    client: httpx.AsyncClient, store: JobStore
):
    for n in range(3):
        await put_job(store, id=f"job-{n}")
    search = (await client.get("AsyncJob", params={"_count": "1"})).json()
    cursor = _link(search, "next").split("_cursor=")[1]
    response = await client.get("AsyncJob/_history", params={"_cursor": cursor})
    assert response.status_code == 400
