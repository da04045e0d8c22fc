"""The byte budget of a search page (FHIR_SERVER_MAX_PAGE_BYTES).

Six searches of `_count=1000` over one owner's 1 MiB jobs each read, held and answered
314 MB. A page now ends before the entry that would take it past its budget (it always
holds one), with a `next` link that continues right after its last entry; and the store
stops reading rows there, so a page of large jobs never holds many more than it shows. A
type's history (GET AsyncJob/_history) pages within the same budget.
"""

from typing import Any

import httpx
import orjson
import pytest

from fhir_server.config import Settings
from fhir_server.search.query import HistoryQuery, JobQuery, SortKey
from fhir_server.storage.base import JobStore

from .conftest import BASE, TEST_JWT_SECRET, put_job
from .test_paging import follow, ids, links

JOB_BYTES = 1000
BUDGET = 3500  # three jobs of JOB_BYTES, not four


@pytest.fixture
def settings() -> Settings:
    return Settings(secret_key="test-secret", jwt_secret=TEST_JWT_SECRET, max_page_bytes=BUDGET)


async def put_sized(store: JobStore, job_id: str, size: int = JOB_BYTES, **fields: object) -> None:
    record = await put_job(store, id=job_id, type="", **fields)
    await put_job(store, id=job_id, type="x" * (size - record.size), **fields)


@pytest.fixture
async def jobs(store: JobStore) -> list[str]:
    names = [f"job-{n:02d}" for n in range(10)]
    for name in names:
        await put_sized(store, name, status=("accepted", "completed")[len(name) % 2])
    return names


async def test_a_page_ends_at_its_budget_and_next_continues_after_it(client, jobs):
    pages = await follow(client, f"{BASE}/AsyncJob?_count=1000&_sort=_id")
    assert [len(page) for page in pages] == [3, 3, 3, 1]
    assert [i for page in pages for i in page] == jobs


@pytest.mark.parametrize("sort", ["-_lastUpdated", "status", "-status,_id", "type"])
async def test_budgeted_pages_keep_the_sort_order(client, jobs, sort: str):
    pages = await follow(client, f"{BASE}/AsyncJob?_count=1000&_sort={sort}")
    whole = await follow(client, f"{BASE}/AsyncJob?_count=1&_sort={sort}")
    assert [i for page in pages for i in page] == [i for page in whole for i in page]


async def test_previous_links_walk_back_within_the_budget(client, jobs):
    forward = await follow(client, f"{BASE}/AsyncJob?_count=1000&_sort=_id")
    last = (await client.get(f"{BASE}/AsyncJob?_count=1000&_sort=_id")).json()
    while "next" in links(last):
        last = (await client.get(links(last)["next"])).json()
    back = await follow(client, links(last)["previous"], "previous")
    assert all(len(page) <= 3 for page in back)
    assert [i for page in reversed(back) for i in page] == [i for p in forward[:-1] for i in p]


async def test_a_job_larger_than_the_budget_is_a_page_of_its_own(client, store):
    await put_sized(store, "a")
    await put_sized(store, "b", size=2 * BUDGET)
    await put_sized(store, "c")
    pages = await follow(client, f"{BASE}/AsyncJob?_count=50&_sort=_id")
    assert pages == [["a"], ["b"], ["c"]]


async def test_offset_pages_have_the_budget_too(client, jobs):
    bundle = (await client.get("AsyncJob?_count=1000&_sort=_id&_offset=2")).json()
    assert ids(bundle) == jobs[2:5]
    rest = await follow(client, links(bundle)["next"])
    assert [i for page in rest for i in page] == jobs[5:]


async def test_the_total_counts_every_match(client, jobs):
    bundle = (await client.get("AsyncJob?_count=1000")).json()
    assert (bundle["total"], len(ids(bundle))) == (10, 3)


async def test_the_store_stops_reading_at_the_budget(store: JobStore, jobs):
    query = JobQuery(sort=(SortKey("id"),), limit=1001, max_bytes=BUDGET)
    # Through the row that goes past the budget: the page knows a row lies beyond it.
    assert [r.id for r in await store.search(query)] == jobs[:4]
    unbounded = JobQuery(sort=(SortKey("id"),), limit=1001)
    assert len(await store.search(unbounded)) == 10


async def history_pages(client: httpx.AsyncClient, url: str) -> list[list[dict[str, Any]]]:
    """The entries of each page of a type's history, following `next`."""
    pages: list[list[dict[str, Any]]] = []
    while url:
        assert len(pages) < 50, "paging does not end"
        response = await client.get(url)
        assert response.status_code == 200, response.text
        bundle = response.json()
        pages.append(bundle.get("entry", []))
        url = links(bundle).get("next", "")
    return pages


def versions(page: list[dict[str, Any]]) -> list[str]:
    return [f"{e['resource']['id']}/{e['resource']['meta']['versionId']}" for e in page]


async def test_a_type_history_page_ends_at_its_budget_too(client, jobs):
    pages = await history_pages(client, f"{BASE}/AsyncJob/_history?_count=1000")
    one_by_one = await history_pages(client, f"{BASE}/AsyncJob/_history?_count=1")
    # Every version once, newest first, as pages of one entry list them.
    assert [v for page in pages for v in versions(page)] == [
        v for page in one_by_one for v in versions(page)
    ]
    assert len(one_by_one) == 2 * len(jobs)
    for page in pages:
        weight = sum(len(orjson.dumps(e["resource"])) for e in page)
        assert weight <= BUDGET or len(page) == 1
    assert len(pages) > 1


async def test_the_store_stops_reading_versions_at_the_budget(store: JobStore, jobs):
    everything = await store.versions(HistoryQuery(limit=1001))
    budgeted = await store.versions(HistoryQuery(limit=1001, max_bytes=BUDGET))
    # Through the row that goes past the budget, newest first.
    sizes = [r.size for r in everything]
    through = next(n for n in range(1, len(sizes) + 1) if sum(sizes[:n]) > BUDGET)
    assert [(r.id, r.version) for r in budgeted] == [
        (r.id, r.version) for r in everything[:through]
    ]
