"""Hostile input: body size, JSON depth, media types, encodings, search size, injection
payloads, forged cursors, no internals in errors. Each rejected write changes nothing."""

import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import orjson
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.search.query import JobQuery
from fhir_server.storage.base import JobRecord, JobStore
from fhir_server.storage.mongo import MongoJobStore

from .auth_helpers import HOST, owned_job
from .conftest import ADMIN_HEADERS, TEST_JWT_SECRET, MakeClient, make_job, put_job

FHIR_JSON = {"Content-Type": "application/fhir+json"}
MIB = 1024 * 1024


async def snapshot(store: JobStore) -> list[tuple[str, int]]:
    records = await store.search(JobQuery(limit=10_000))
    return sorted((r.id, r.version) for r in records)


def new_job_bytes(padding: int = 0) -> bytes:
    job = make_job(id=None, text={"status": "generated", "div": "<div>" + "x" * padding + "</div>"})
    return orjson.dumps(job)


def outcome_code(response: httpx.Response) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return str(body["issue"][0]["code"])


# -- body size -------------------------------------------------------------------------------


async def test_body_over_the_limit_is_413_and_stores_nothing(
    client: httpx.AsyncClient, store: JobStore
):
    response = await client.post("AsyncJob", content=new_job_bytes(MIB), headers=FHIR_JSON)
    assert response.status_code == 413
    assert outcome_code(response) == "too-costly"
    assert await snapshot(store) == []


async def test_body_just_under_the_limit_is_accepted(client: httpx.AsyncClient):
    body = new_job_bytes(0)
    body = new_job_bytes(MIB - len(body) - 100)
    assert len(body) <= MIB
    response = await client.post("AsyncJob", content=body, headers=FHIR_JSON)
    assert response.status_code == 201


async def test_declared_content_length_over_the_limit_is_413_before_the_body_is_read(
    store: JobStore, settings: Settings
):
    app = create_app(settings, store=store)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/fhir/R4/AsyncJob",
        "raw_path": b"/fhir/R4/AsyncJob",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("testserver", 80),
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/fhir+json"),
            (b"content-length", str(10 * MIB).encode()),
            (b"authorization", ADMIN_HEADERS["Authorization"].encode()),
        ],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 413


async def test_chunked_body_over_the_limit_is_413_and_stores_nothing(
    client: httpx.AsyncClient, store: JobStore
):
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"resourceType": "AsyncJob", "text": {"div": "'
        for _ in range(3):
            yield b"x" * (MIB // 2)
        yield b'"}}'

    response = await client.post("AsyncJob", content=chunks(), headers=FHIR_JSON)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert await snapshot(store) == []


async def test_search_form_body_over_the_limit_is_413(client: httpx.AsyncClient):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    response = await client.post("AsyncJob/_search", content=b"type=" + b"x" * MIB, headers=form)
    assert response.status_code == 413


async def test_adapter_body_over_the_limit_is_413_in_the_envelope(client: httpx.AsyncClient):
    response = await client.request("GET", f"{HOST}/Jobs/job-1", content=b"x" * (MIB + 1))
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_malformed"


async def test_body_limit_is_a_setting(store: JobStore):
    app = create_app(Settings(jwt_secret=TEST_JWT_SECRET, max_body_bytes=100), store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, headers=ADMIN_HEADERS) as http:
        response = await http.post(
            f"{HOST}/fhir/R4/AsyncJob", content=new_job_bytes(), headers=FHIR_JSON
        )
    assert response.status_code == 413


# -- JSON shape, media type, encoding ---------------------------------------------------------


def nested(depth: int) -> bytes:
    return b'{"resourceType": "AsyncJob", "x": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [100, 5000])
async def test_deeply_nested_json_is_400_and_stores_nothing(
    client: httpx.AsyncClient, store: JobStore, depth: int
):
    response = await client.post("AsyncJob", content=nested(depth), headers=FHIR_JSON)
    assert response.status_code == 400
    assert outcome_code(response) == "structure"
    assert await snapshot(store) == []


async def test_nesting_limit_names_the_depth(client: httpx.AsyncClient):
    response = await client.post("AsyncJob", content=nested(100), headers=FHIR_JSON)
    assert "deeper than 64 levels" in response.json()["issue"][0]["diagnostics"]


def job_with(**fields: Any) -> bytes:
    return orjson.dumps(make_job(id=None, **fields))


async def test_many_empty_contained_resources_are_400_before_validation(
    client: httpx.AsyncClient, store: JobStore
):
    body = job_with(contained=[{}] * 150_000)  # 450 KB that took seconds to validate
    response = await client.post("AsyncJob", content=body, headers=FHIR_JSON)
    assert response.status_code == 400
    assert response.json()["issue"][0] == {
        "severity": "error",
        "code": "too-costly",
        "diagnostics": "AsyncJob.contained has 150000 items; at most 1000 are accepted in "
        "one array",
        "expression": ["AsyncJob.contained"],
    }
    assert await snapshot(store) == []


async def test_long_array_of_integers_is_400_naming_the_element(client: httpx.AsyncClient):
    body = job_with(output={"resourceType": "Parameters", "parameter": [0] * 200_000})
    response = await client.post("AsyncJob", content=body, headers=FHIR_JSON)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["AsyncJob.output.parameter"]


async def test_body_with_too_many_values_in_short_arrays_is_400(
    client: httpx.AsyncClient, store: JobStore
):
    extension = [{"url": "https://example.org/x", "extension": [{}] * 10} for _ in range(1000)]
    response = await client.post(
        "AsyncJob", content=job_with(extension=extension), headers=FHIR_JSON
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["diagnostics"] == (
        "The JSON body has more than 10000 values (objects, arrays and scalars together)"
    )
    assert await snapshot(store) == []


async def test_array_and_value_limits_are_settings(store: JobStore):
    limits = Settings(jwt_secret=TEST_JWT_SECRET, max_json_array_items=2, max_json_elements=12)
    app = create_app(limits, store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, headers=ADMIN_HEADERS) as http:
        url = f"{HOST}/fhir/R4/AsyncJob"
        three = await http.post(url, content=job_with(extension=[{}] * 3), headers=FHIR_JSON)
        extension = [{"url": "https://example.org/x", "valueInteger": 1}] * 2  # 12 values
        two = await http.post(url, content=job_with(extension=extension), headers=FHIR_JSON)
        tags = {"tag": [{"system": "https://example.org", "code": "a"}] * 2}  # 13 values
        many = await http.post(url, content=job_with(meta=tags), headers=FHIR_JSON)
    assert three.status_code == 400
    assert "at most 2 are accepted" in three.json()["issue"][0]["diagnostics"]
    assert two.status_code == 201
    assert many.status_code == 400
    assert "more than 12 values" in many.json()["issue"][0]["diagnostics"]


async def test_body_that_is_not_json_is_400(client: httpx.AsyncClient, store: JobStore):
    response = await client.post("AsyncJob", content=b"<AsyncJob/>", headers=FHIR_JSON)
    assert response.status_code == 400
    assert await snapshot(store) == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "", "multipart/form-data"]
)
async def test_body_of_another_media_type_is_415(
    client: httpx.AsyncClient, store: JobStore, content_type: str
):
    headers = {"Content-Type": content_type}
    response = await client.post("AsyncJob", content=new_job_bytes(), headers=headers)
    assert response.status_code == 415
    assert await snapshot(store) == []


async def test_body_in_another_charset_is_415(client: httpx.AsyncClient, store: JobStore):
    headers = {"Content-Type": "application/fhir+json; charset=iso-8859-1"}
    response = await client.post("AsyncJob", content=new_job_bytes(), headers=headers)
    assert response.status_code == 415
    assert await snapshot(store) == []


async def test_body_with_invalid_utf8_is_400(client: httpx.AsyncClient, store: JobStore):
    body = b'{"resourceType": "AsyncJob", "type": "\xff\xfe"}'
    response = await client.post("AsyncJob", content=body, headers=FHIR_JSON)
    assert response.status_code == 400
    assert "UTF-8" in response.json()["issue"][0]["diagnostics"]
    assert await snapshot(store) == []


@pytest.mark.parametrize(
    "field",
    [{"status": {"$ne": None}}, {"type": {"$gt": ""}}, {"request": {"$where": "1"}}, {"$set": 1}],
)
async def test_operator_objects_in_a_json_body_are_rejected_and_store_nothing(
    client: httpx.AsyncClient, store: JobStore, field: dict[str, Any]
):
    response = await client.post("AsyncJob", json=make_job(id=None, **field), headers=FHIR_JSON)
    assert 400 <= response.status_code < 500
    assert await snapshot(store) == []


async def test_search_with_invalid_utf8_in_the_query_string_is_400(client: httpx.AsyncClient):
    response = await client.get("AsyncJob?type=%ff%fe")
    assert response.status_code == 400
    assert "not valid UTF-8" in response.json()["issue"][0]["diagnostics"]


async def test_search_with_invalid_utf8_in_the_form_body_is_400(client: httpx.AsyncClient):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    response = await client.post("AsyncJob/_search", content=b"type=%ff", headers=form)
    assert response.status_code == 400


async def test_search_with_percent_encoded_utf8_is_answered(
    client: httpx.AsyncClient, store: JobStore
):
    await put_job(store, id="ukr", type="експорт")
    response = await client.get("AsyncJob?type=%D0%B5%D0%BA%D1%81%D0%BF%D0%BE%D1%80%D1%82")
    assert match_ids(response) == ["ukr"]


# -- search size ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_search_with_too_many_parameters_is_400(client: httpx.AsyncClient, method: str):
    params = [("type", f"t{n}") for n in range(51)]
    response = await search(client, method, params)
    assert response.status_code == 400
    assert "at most 50" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_search_with_too_many_values_for_a_parameter_is_400(
    client: httpx.AsyncClient, method: str
):
    response = await search(client, method, [("type", ",".join(f"t{n}" for n in range(101)))])
    assert response.status_code == 400
    assert "more than 100 values" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_search_with_too_long_a_value_is_400(client: httpx.AsyncClient, method: str):
    response = await search(client, method, [("type", "x" * 2049)])
    assert response.status_code == 400
    assert "longer than 2048" in response.json()["issue"][0]["diagnostics"]


async def test_search_within_the_caps_is_answered(client: httpx.AsyncClient):
    params = [("type", ",".join(f"t{n}" for n in range(100)))] + [("status", "accepted")] * 49
    assert (await client.get("AsyncJob", params=params)).status_code == 200


async def search(
    client: httpx.AsyncClient, method: str, params: list[tuple[str, str]]
) -> httpx.Response:
    if method == "GET":
        return await client.get("AsyncJob", params=params)
    return await client.post("AsyncJob/_search", data=dict_list(params))


def dict_list(params: list[tuple[str, str]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in params:
        result.setdefault(name, []).append(value)
    return result


# -- injection ------------------------------------------------------------------------------

INJECTIONS = [
    "$ne",
    "$gt",
    "$where",
    "$regex",
    '{"$ne": null}',
    '{"$gt": ""}',
    '{"$regex": ".*"}',
    "this.type != ''",
    ".*",
    "^bulk",
    "' OR '1'='1",
    "'; DROP TABLE asyncjob; --",
    '" OR ""="',
    "x' /* comment */ OR 1=1 --",
    "%",
    "_",
    "bulk%",
    "bulk_export",
    "a\x00b",
    "\x00",
]


@pytest.fixture
async def seeded(store: JobStore) -> JobStore:
    for n, kind in enumerate(["bulk-export", "bulk_export_x", "data-migration", "a", "b"]):
        await put_job(store, id=f"plain-{n}", type=kind)
    return store


@pytest.mark.parametrize("payload", INJECTIONS)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_search_value_is_a_literal(
    client: httpx.AsyncClient, seeded: JobStore, payload: str, method: str
):
    await put_job(seeded, id="literal", type=payload)
    response = await search(client, method, [("type", payload)])
    assert response.status_code == 200
    assert match_ids(response) == ["literal"]


@pytest.mark.parametrize("payload", INJECTIONS)
async def test_id_search_value_is_a_literal(
    client: httpx.AsyncClient, seeded: JobStore, payload: str
):
    response = await client.get("AsyncJob", params={"_id": payload})
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert match_ids(response) == []


@pytest.mark.parametrize("name", ["type[$ne]", "type.$ne", "$where", "status[$regex]"])
async def test_operator_shaped_parameter_names_are_unknown_parameters(
    client: httpx.AsyncClient, seeded: JobStore, name: str
):
    strict = {"Prefer": "handling=strict"}
    response = await client.get("AsyncJob", params={name: "x"}, headers=strict)
    assert response.status_code == 400
    assert outcome_code(response) == "not-supported"


def match_ids(response: httpx.Response) -> list[str]:
    entries = response.json().get("entry", [])
    return sorted(e["resource"]["id"] for e in entries if e["search"]["mode"] == "match")


# -- paging cursors -------------------------------------------------------------------------


def cursor_of(url: str) -> str:
    return parse_qs(urlparse(url).query)["_cursor"][0]


def next_link(response: httpx.Response) -> str:
    return next(x["url"] for x in response.json()["link"] if x["relation"] == "next")


async def test_forged_cursor_is_400(client: httpx.AsyncClient, seeded: JobStore):
    forged = "eyJ2IjpbXSwiaSI6InBsYWluLTAiLCJmIjp0cnVlLCJzIjoiIn0"
    response = await client.get("AsyncJob", params={"_cursor": forged})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["_cursor"]


async def test_edited_cursor_is_400(client: httpx.AsyncClient, seeded: JobStore):
    cursor = cursor_of(next_link(await client.get("AsyncJob", params={"_count": "2"})))
    edited = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
    response = await client.get("AsyncJob", params={"_count": "2", "_cursor": edited})
    assert response.status_code == 400


async def test_cursor_issued_to_one_owner_never_shows_their_jobs_to_another(
    make_client: MakeClient, store: JobStore
):
    for n in range(5):
        await owned_job(store, "alice", id=f"alice-{n}")
    await owned_job(store, "bob", id="bob-0")
    scope = "system/AsyncJob.rs"
    async with make_client(sub="alice", scope=scope) as alice:
        link = next_link(await alice.get("AsyncJob", params={"_count": "2"}))
    async with make_client(sub="bob", scope=scope) as bob:
        response = await bob.get(link)
    assert response.status_code == 200
    assert all(not i.startswith("alice") for i in match_ids(response))
    assert response.json()["total"] == 1


# -- errors carry no internals, and are logged with the request id ----------------------------


class ExplodingStore(MongoJobStore):
    def __init__(self) -> None:
        pass

    async def get(self, job_id: str) -> JobRecord | None:
        raise RuntimeError("password=hunter2 in /srv/internal/module.py")


async def test_unexpected_error_on_a_fhir_path_is_a_plain_500_outcome():
    app = create_app(Settings(jwt_secret=TEST_JWT_SECRET), store=ExplodingStore())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, headers=ADMIN_HEADERS) as http:
        response = await http.get(f"{HOST}/fhir/R4/AsyncJob/job-1")
    assert response.status_code == 500
    assert outcome_code(response) == "exception"
    assert b"hunter2" not in response.content
    assert b"Traceback" not in response.content
    assert b".py" not in response.content


async def test_unexpected_error_is_logged_with_the_request_id(caplog: pytest.LogCaptureFixture):
    app = create_app(Settings(jwt_secret=TEST_JWT_SECRET), store=ExplodingStore())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {**ADMIN_HEADERS, "X-Request-ID": "req-500-abc"}
    with caplog.at_level(logging.ERROR, logger="fhir_server"):
        async with httpx.AsyncClient(transport=transport, headers=headers) as http:
            await http.get(f"{HOST}/fhir/R4/AsyncJob/job-1")
    record = next(r for r in caplog.records if "req-500-abc" in r.getMessage())
    assert record.exc_info is not None  # the trace stays in the server log


@pytest.mark.parametrize("path", ["/fhir/R4/AsyncJob/missing", "/Jobs/missing"])
async def test_client_error_is_logged_with_the_request_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, path: str
):
    with caplog.at_level(logging.INFO, logger="fhir_server"):
        await client.get(HOST + path, headers={"X-Request-ID": "req-404-xyz"})
    messages = [r.getMessage() for r in caplog.records]
    assert any("404" in m and "request_id=req-404-xyz" in m for m in messages), messages


async def test_every_fhir_response_carries_the_request_id(client: httpx.AsyncClient):
    response = await client.get("AsyncJob", headers={"X-Request-ID": "req-1"})
    assert response.headers["x-request-id"] == "req-1"


async def test_generated_request_id_is_answered_when_none_is_sent(client: httpx.AsyncClient):
    response = await client.get("AsyncJob/missing")
    assert len(response.headers["x-request-id"]) == 32
