"""Search paging: keyset cursors in next/previous links, _offset, tamper-evidence."""

from typing import Any

import httpx
import pytest

from fhir_server.storage.base import JobStore

from .conftest import BASE, put_job


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"]


@pytest.fixture
async def many(store: JobStore) -> list[str]:
    """23 jobs: statuses repeat, so a status sort has long runs of ties."""
    statuses = ["accepted", "completed", "error"]
    names = [f"job-{n:02d}" for n in range(23)]
    for n, name in enumerate(names):
        await put_job(store, id=name, status=statuses[n % 3])
    return names


async def follow(client: httpx.AsyncClient, url: str, relation: str = "next") -> list[list[str]]:
    pages: list[list[str]] = []
    while url:
        assert len(pages) < 50, "paging does not end"
        response = await client.get(url)
        assert response.status_code == 200, response.text
        bundle = response.json()
        pages.append(ids(bundle))
        url = links(bundle).get(relation, "")
    return pages


async def test_next_links_visit_every_job_once(client: httpx.AsyncClient, many: list[str]):
    pages = await follow(client, f"{BASE}/AsyncJob?_count=5")
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert sorted(i for page in pages for i in page) == many


@pytest.mark.parametrize("sort", ["status", "-status", "status,-_id", "-_lastUpdated", "type"])
async def test_paging_through_ties_keeps_the_sort_order(
    client: httpx.AsyncClient, many: list[str], sort: str
):
    pages = await follow(client, f"{BASE}/AsyncJob?_count=4&_sort={sort}")
    whole = (await client.get(f"AsyncJob?_count=100&_sort={sort}")).json()
    assert [i for page in pages for i in page] == ids(whole)


async def test_previous_links_walk_back_to_the_first_page(
    client: httpx.AsyncClient, many: list[str]
):
    forward = await follow(client, f"{BASE}/AsyncJob?_count=5&_sort=_id")
    last = (await client.get("AsyncJob?_count=5&_sort=_id")).json()
    for _ in range(4):
        last = (await client.get(links(last)["next"])).json()
    backward = await follow(client, links(last)["previous"], relation="previous")
    assert backward == forward[-2::-1]


async def test_first_page_has_no_previous_and_last_page_no_next(
    client: httpx.AsyncClient, many: list[str]
):
    first = (await client.get("AsyncJob?_count=20")).json()
    assert "previous" not in links(first)
    last = (await client.get(links(first)["next"])).json()
    assert "next" not in links(last)
    assert "previous" in links(last)


async def test_links_are_absolute_and_keep_the_search(client: httpx.AsyncClient, many: list[str]):
    bundle = (await client.get("AsyncJob?status=completed&_count=2")).json()
    for url in links(bundle).values():
        assert url.startswith(f"{BASE}/AsyncJob?")
        assert "status=completed" in url and "_count=2" in url


async def test_self_link_names_the_page_it_is_on(client: httpx.AsyncClient, many: list[str]):
    first = (await client.get("AsyncJob?_sort=_id&_count=5")).json()
    second_url = links(first)["next"]
    second = (await client.get(second_url)).json()
    assert links(second)["self"] == second_url
    assert ids((await client.get(links(second)["self"])).json()) == many[5:10]
    at_offset = (await client.get("AsyncJob?_sort=_id&_count=5&_offset=10")).json()
    assert links(at_offset)["self"].endswith("_offset=10")


async def test_post_search_with_the_cursor_in_its_body_links_to_itself(
    client: httpx.AsyncClient, many: list[str]
):
    first = (await client.get("AsyncJob?_sort=_id&_count=5")).json()
    cursor = links(first)["next"].split("_cursor=")[1]
    form = {"_sort": "_id", "_count": "5", "_cursor": cursor}
    second = (await client.post("AsyncJob/_search", data=form)).json()
    assert ids(second) == many[5:10]
    assert links(second)["self"].endswith(f"_cursor={cursor}")
    assert ids((await client.get(links(second)["self"])).json()) == many[5:10]


async def test_offset_pages(client: httpx.AsyncClient, many: list[str]):
    page = (await client.get("AsyncJob?_sort=_id&_count=5&_offset=10")).json()
    assert ids(page) == many[10:15]
    assert links(page)["previous"].endswith("_offset=5")
    assert ids((await client.get(links(page)["next"])).json()) == many[15:20]


async def test_an_edited_cursor_is_rejected(client: httpx.AsyncClient, many: list[str]):
    page = (await client.get("AsyncJob?_count=5")).json()
    url = links(page)["next"]
    cursor = url.split("_cursor=")[1]
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    response = await client.get(url.replace(cursor, tampered))
    assert response.status_code == 400
    assert "_cursor" in response.json()["issue"][0]["diagnostics"]


async def test_a_cursor_is_bound_to_its_sort(client: httpx.AsyncClient, many: list[str]):
    page = (await client.get("AsyncJob?_count=5&_sort=status")).json()
    url = links(page)["next"].replace("_sort=status", "_sort=-status")
    assert (await client.get(url)).status_code == 400


async def test_total_is_the_whole_match_count_on_every_page(
    client: httpx.AsyncClient, many: list[str]
):
    page = (await client.get("AsyncJob?status=accepted&_count=3")).json()
    second = (await client.get(links(page)["next"])).json()
    assert page["total"] == second["total"] == 8
