"""Search through HTTP: parameters, modifiers, prefixes, sorting and Bundle shape."""

import asyncio
from typing import Any

import httpx
import pytest

from fhir_server.storage.base import JobStore

from .conftest import BASE, put_job


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


async def search(client: httpx.AsyncClient, query: str, **kwargs: Any) -> dict[str, Any]:
    response = await client.get(f"AsyncJob?{query}", **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def jobs(store: JobStore) -> None:
    """Five jobs with distinct statuses, types and times (lastUpdated in id order)."""
    # lastUpdated has millisecond precision: space the writes so their order is certain
    await asyncio.sleep(0.002)
    await put_job(
        store, id="a", status="accepted", type="bulk-export", requestTime="2024-05-01T10:00:00Z"
    )
    await asyncio.sleep(0.002)
    await put_job(
        store,
        id="b",
        status="completed",
        type="bulk-export",
        requestTime="2024-05-15T10:00:00Z",
        transactionTime="2024-05-15T10:05:00Z",
    )
    await asyncio.sleep(0.002)
    await put_job(
        store,
        id="c",
        status="error",
        type="data-migration",
        dataVersion=3,
        requestTime="2024-06-01T00:00:00Z",
        transactionTime="2024-06-01T00:00:01Z",
    )
    await asyncio.sleep(0.002)
    await put_job(store, id="d", status="cancelled", requestTime="2023-12-31T23:59:59Z")
    await asyncio.sleep(0.002)
    await put_job(
        store,
        id="e",
        status="completed",
        type="reindex",
        requestTime="2024-05-31T23:59:59.999Z",
        transactionTime="2024-06-02T00:00:00Z",
    )


async def test_searchset_bundle_shape(client: httpx.AsyncClient, jobs: None):
    bundle = await search(client, "status=completed")
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 2
    entry = bundle["entry"][0]
    assert entry["fullUrl"] == f"{BASE}/AsyncJob/{entry['resource']['id']}"
    assert entry["search"] == {"mode": "match"}
    relations = {link["relation"]: link["url"] for link in bundle["link"]}
    assert relations["self"] == f"{BASE}/AsyncJob?status=completed"
    assert relations["first"] == f"{BASE}/AsyncJob?status=completed"


async def test_default_sort_is_newest_first(client: httpx.AsyncClient, jobs: None):
    assert ids(await search(client, "")) == ["e", "d", "c", "b", "a"]


async def test_token_code(client: httpx.AsyncClient, jobs: None):
    assert sorted(ids(await search(client, "status=completed"))) == ["b", "e"]


async def test_token_comma_is_or(client: httpx.AsyncClient, jobs: None):
    assert sorted(ids(await search(client, "status=accepted,error"))) == ["a", "c"]


async def test_repeated_parameter_is_and(client: httpx.AsyncClient, jobs: None):
    found = ids(await search(client, "status=completed,accepted&type=bulk-export"))
    assert sorted(found) == ["a", "b"]
    assert ids(await search(client, "status=completed&status=accepted")) == []


async def test_token_with_the_implied_system(client: httpx.AsyncClient, jobs: None):
    system = "https://medplum.com/fhir/CodeSystem/async-job-status"
    assert sorted(ids(await search(client, f"status={system}|completed"))) == ["b", "e"]
    assert ids(await search(client, "status=http://other.org|completed")) == []
    assert sorted(ids(await search(client, "status=|completed"))) == ["b", "e"]


async def test_type_token_with_the_servers_own_code_system(client: httpx.AsyncClient, jobs: None):
    """The type codes' CodeSystem is served under the FHIR base (its canonical URL)."""
    system = f"{client.base_url}CodeSystem/async-job-type"
    assert sorted(ids(await search(client, f"type={system}|bulk-export"))) == ["a", "b"]
    assert ids(await search(client, "type=http://other.org/CodeSystem/other|bulk-export")) == []


async def test_token_not_includes_jobs_without_a_value(client: httpx.AsyncClient, jobs: None):
    assert sorted(ids(await search(client, "type:not=bulk-export"))) == ["c", "d", "e"]


async def test_token_missing(client: httpx.AsyncClient, jobs: None):
    assert ids(await search(client, "type:missing=true")) == ["d"]
    assert sorted(ids(await search(client, "type:missing=false"))) == ["a", "b", "c", "e"]


async def test_id_list(client: httpx.AsyncClient, jobs: None):
    assert sorted(ids(await search(client, "_id=a,c,zz"))) == ["a", "c"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("request-time=2024-05", ["a", "b", "e"]),
        ("request-time=2024", ["a", "b", "c", "e"]),
        ("request-time=2024-05-01", ["a"]),
        ("request-time=eq2024-05-15T10:00:00Z", ["b"]),
        ("request-time=ne2024-05", ["c", "d"]),
        ("request-time=gt2024-05", ["c"]),
        ("request-time=sa2024-05", ["c"]),
        ("request-time=lt2024-05", ["d"]),
        ("request-time=eb2024-05", ["d"]),
        ("request-time=ge2024-05-15", ["b", "c", "e"]),
        ("request-time=le2024-05-01", ["a", "d"]),
        ("request-time=ge2024-05-01&request-time=lt2024-05-16", ["a", "b"]),
        ("request-time=2024-05-15T12:00:00%2B02:00", ["b"]),
        ("transaction-time=lt2025", ["b", "c", "e"]),
        ("transaction-time:missing=true", ["a", "d"]),
        ("transaction-time=ne2024-06-01", ["b", "e"]),
    ],
)
async def test_date_prefixes_and_partial_dates(
    client: httpx.AsyncClient, jobs: None, query: str, expected: list[str]
):
    assert sorted(ids(await search(client, query))) == expected


async def test_last_updated(client: httpx.AsyncClient, jobs: None):
    assert len(ids(await search(client, "_lastUpdated=gt2000-01-01"))) == 5
    assert ids(await search(client, "_lastUpdated=lt2000-01-01")) == []


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("_id", ["a", "b", "c", "d", "e"]),
        ("-_id", ["e", "d", "c", "b", "a"]),
        ("request-time", ["d", "a", "b", "e", "c"]),
        ("-request-time", ["c", "e", "b", "a", "d"]),
        ("status,-_id", ["a", "d", "e", "b", "c"]),
        ("type,_id", ["d", "a", "b", "c", "e"]),
        ("-transaction-time", ["e", "c", "b", "d", "a"]),  # ties: -_id
        ("_lastUpdated", ["a", "b", "c", "d", "e"]),
    ],
)
async def test_sort(client: httpx.AsyncClient, jobs: None, sort: str, expected: list[str]):
    assert ids(await search(client, f"_sort={sort}")) == expected


async def test_count_zero_returns_only_the_total(client: httpx.AsyncClient, jobs: None):
    bundle = await search(client, "status=completed&_count=0")
    assert bundle["total"] == 2
    assert "entry" not in bundle  # FHIR JSON has no empty arrays
    assert "next" not in {link["relation"] for link in bundle["link"]}


async def test_summary_count_returns_only_the_total(client: httpx.AsyncClient, jobs: None):
    bundle = await search(client, "_summary=count")
    assert bundle["total"] == 5
    assert "entry" not in bundle


async def test_total_none_omits_the_total(client: httpx.AsyncClient, jobs: None):
    bundle = await search(client, "_total=none")
    assert "total" not in bundle
    assert len(ids(bundle)) == 5


async def test_elements_keeps_mandatory_elements_and_marks_subsetted(
    client: httpx.AsyncClient, jobs: None
):
    bundle = await search(client, "_id=b&_elements=type")
    resource = bundle["entry"][0]["resource"]
    assert set(resource) == {
        "resourceType",
        "id",
        "meta",
        "status",
        "requestTime",
        "request",
        "type",
    }
    assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"


async def test_summary_true_drops_output(client: httpx.AsyncClient, store: JobStore):
    output = {"resourceType": "Parameters", "parameter": [{"name": "n", "valueInteger": 1}]}
    await asyncio.sleep(0.002)
    await put_job(store, id="x", status="completed", output=output)
    resource = (await search(client, "_summary=true"))["entry"][0]["resource"]
    assert "output" not in resource
    assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"


async def test_post_search_merges_form_body_with_url_parameters(
    client: httpx.AsyncClient, jobs: None
):
    response = await client.post("AsyncJob/_search?type=bulk-export", data={"status": "completed"})
    assert response.status_code == 200
    assert ids(response.json()) == ["b"]


async def test_unknown_parameter_is_ignored_with_a_warning(client: httpx.AsyncClient, jobs: None):
    bundle = await search(client, "status=accepted&color=blue")
    assert ids(bundle) == ["a"]
    outcome = bundle["entry"][-1]
    assert outcome["search"]["mode"] == "outcome"
    assert outcome["resource"]["resourceType"] == "OperationOutcome"
    assert outcome["resource"]["issue"][0]["severity"] == "warning"
    assert "color" in outcome["resource"]["issue"][0]["diagnostics"]


async def test_unknown_parameter_with_strict_handling_is_400(client: httpx.AsyncClient, jobs: None):
    response = await client.get("AsyncJob?color=blue", headers={"Prefer": "handling=strict"})
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["diagnostics"] == "Unknown search parameter 'color'"  # not "was ignored"
    assert issue["expression"] == ["color"]


async def test_unknown_parameter_in_a_post_search_body_with_strict_handling_is_400(
    client: httpx.AsyncClient, jobs: None
):
    response = await client.post(
        "AsyncJob/_search", data={"color": "blue"}, headers={"Prefer": "handling=strict"}
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["color"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("_count=abc", "_count"),
        ("_count=-1", "_count"),
        ("_lastUpdated=yesterday", "_lastUpdated"),
        ("request-time=2024-13-01", "request-time"),
        ("status:exact=accepted", "status:exact"),
        ("request-time:not=2024", "request-time:not"),
        ("_sort=color", "_sort"),
        ("_total=maybe", "_total"),
        ("_summary=some", "_summary"),
        ("type:missing=maybe", "type:missing"),
        ("_offset=10001", "_offset"),
        ("_cursor=not-a-cursor", "_cursor"),
    ],
)
async def test_malformed_values_are_400_naming_the_parameter(
    client: httpx.AsyncClient, query: str, parameter: str
):
    response = await client.get(f"AsyncJob?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "invalid"
    assert parameter in body["issue"][0]["diagnostics"]


async def test_count_above_the_maximum_is_clamped(client: httpx.AsyncClient, jobs: None):
    bundle = await search(client, "_count=5000")
    assert len(ids(bundle)) == 5


async def test_operator_syntax_in_a_name_is_just_an_unknown_parameter(
    client: httpx.AsyncClient, jobs: None
):
    bundle = await search(client, "status[$ne]=x")
    assert len(ids(bundle)) == 5
    assert bundle["entry"][-1]["search"]["mode"] == "outcome"


@pytest.mark.parametrize(
    "value",
    [
        "$gt",
        "%7B%22%24ne%22%3A%22x%22%7D",
        '{"$where":"sleep(100)"}',
        "%27%20OR%201%3D1%20--",
        "x%27%3B%20DROP%20TABLE%20asyncjob%3B--",
        "%25",
        "accept_d",
        ".*",
        "accepted%00",
    ],
)
async def test_token_values_are_literals_never_operators(
    client: httpx.AsyncClient, jobs: None, value: str
):
    assert ids(await search(client, f"status={value}")) == []
    assert ids(await search(client, f"type:not={value}&_count=1"))  # not=literal excludes nothing


async def test_a_value_that_looks_like_an_operator_matches_literally(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="odd", type="$gt")
    await put_job(store, id="plain", type="export")
    assert ids(await search(client, "type=$gt")) == ["odd"]


async def test_a_repeated_search_is_answered_alike_from_the_parse_cache(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="job-1", status="accepted")
    first = (await client.get("AsyncJob?status=accepted")).json()
    await put_job(store, id="job-2", status="accepted")
    second = (await client.get("AsyncJob?status=accepted")).json()
    # The parse is reused, the query runs again: the new job is found.
    assert [e["resource"]["id"] for e in first["entry"]] == ["job-1"]
    assert {e["resource"]["id"] for e in second["entry"]} == {"job-1", "job-2"}


async def test_a_rejected_query_string_stays_rejected(client: httpx.AsyncClient):
    for _ in range(2):
        response = await client.get("AsyncJob?_count=many")
        assert response.status_code == 400
        assert "_count" in response.json()["issue"][0]["diagnostics"]


async def test_strict_handling_is_judged_per_request_for_the_same_query(
    client: httpx.AsyncClient,
):
    lenient = await client.get("AsyncJob?colour=red")
    strict = await client.get("AsyncJob?colour=red", headers={"Prefer": "handling=strict"})
    again = await client.get("AsyncJob?colour=red")
    assert lenient.status_code == 200 and again.status_code == 200
    assert strict.status_code == 400
