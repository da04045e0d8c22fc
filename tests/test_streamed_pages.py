"""Large search pages are sent in chunks: the body never exists in one piece, and no chunk
costs the event loop more than a bounded serialization (bundle_chunks, api/responses.py)."""

import asyncio

import orjson
import pytest

from fhir_server.api import responses
from fhir_server.api.responses import FhirResponse, bundle_chunks
from fhir_server.storage.base import JobStore

from .conftest import put_job


def bundle_of(sizes: list[int]) -> dict[str, object]:
    entries = [
        {
            "fullUrl": f"http://x/fhir/R4/AsyncJob/{n}",
            "resource": orjson.Fragment(orjson.dumps({"id": str(n), "note": "é" * size})),
            "search": {"mode": "match"},
        }
        for n, size in enumerate(sizes)
    ]
    return {"resourceType": "Bundle", "type": "searchset", "total": 3, "entry": entries}


async def streamed(bundle: dict[str, object], pretty: bool) -> list[bytes]:
    return [chunk async for chunk in bundle_chunks(bundle, pretty)]


@pytest.mark.parametrize("pretty", [False, True])
@pytest.mark.parametrize(
    "sizes", [[10], [10, 20, 30], [200_000, 10, 300_000, 5], [300_000], [10] * 3000]
)
async def test_the_chunks_are_the_bytes_of_the_whole_bundle(sizes: list[int], pretty: bool):
    bundle = bundle_of(sizes)
    whole = FhirResponse(bundle, pretty=pretty).body
    chunks = await streamed(bundle, pretty)
    assert b"".join(chunks) == whole
    # No chunk is much more than CHUNK_BYTES and one entry (pretty: indentation added).
    largest_entry = max(sizes) * 2 + 300
    assert max(map(len, chunks)) <= 1.1 * responses.CHUNK_BYTES + largest_entry


async def test_the_loop_gets_a_turn_between_chunks():
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    chunks = await streamed(bundle_of([300_000] * 8), pretty=False)
    task.cancel()
    assert ticks >= len(chunks) - 2


async def test_a_large_page_is_streamed_and_a_small_one_is_not(client, store: JobStore):
    for n in range(6):
        await put_job(store, id=f"big-{n}", type="x" * 400_000)
    await put_job(store, id="small")
    large = await client.get("AsyncJob?_count=100&_sort=_id")
    assert large.status_code == 200
    assert "content-length" not in large.headers
    assert large.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert large.headers["cache-control"] == "no-store"
    bundle = large.json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == [f"big-{n}" for n in range(6)] + [
        "small"
    ]
    pretty = await client.get("AsyncJob?_count=100&_sort=_id&_pretty=true")
    assert pretty.json() == {**bundle, "id": pretty.json()["id"], "meta": pretty.json()["meta"]}
    assert pretty.text.startswith('{\n  "resourceType": "Bundle",')
    small = await client.get("AsyncJob?_id=small")
    assert small.headers["content-length"] == str(len(small.content))
