"""Numbers are ASCII digits only. str.isdigit() is true for '²' and '①', which int() then
refuses (a 500); int() and \\d take '٣' (Arabic-Indic three) as 3. Each case below was a 500 or
read a number nobody wrote."""

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.storage.base import JobStore
from fhir_server.storage.mongo_client import client_options

from .auth_helpers import JOB_ID, owned_job
from .conftest import ADMIN_HEADERS, put_job

FHIR_JSON = {"Content-Type": "application/fhir+json"}
# Superscript two, circled one, Arabic-Indic three, mathematical bold nine, Devanagari one
# and zero: every one passes str.isdigit().
NOT_ASCII_NUMBERS = ["²", "①", "٣", "𝟗", "१०", "1²"]


def assert_400_outcome(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


@pytest.mark.parametrize("number", NOT_ASCII_NUMBERS)
@pytest.mark.parametrize("parameter", ["_count", "_offset"])
async def test_search_number_in_another_script_is_400(
    client: httpx.AsyncClient, parameter: str, number: str
):
    response = await client.get("AsyncJob", params={parameter: number})
    body = assert_400_outcome(response)
    assert body["issue"][0]["code"] == "invalid"
    assert parameter in body["issue"][0]["diagnostics"]


async def test_search_form_number_in_another_script_is_400(client: httpx.AsyncClient):
    response = await client.post("AsyncJob/_search", data={"_count": "²"})
    assert_400_outcome(response)


async def test_search_number_too_long_for_the_store_is_400(client: httpx.AsyncClient):
    assert_400_outcome(await client.get("AsyncJob", params={"_offset": "9" * 19}))


async def test_ascii_count_still_works(client: httpx.AsyncClient, store: JobStore):
    for _ in range(4):
        await put_job(store)
    response = await client.get("AsyncJob", params={"_count": "03"})
    assert response.status_code == 200
    assert len(response.json()["entry"]) == 3


@pytest.mark.parametrize("date", ["٢٠٢٦", "2026-٠١", "ge٢٠٢٦-01-01"])
async def test_search_date_in_another_script_is_400(client: httpx.AsyncClient, date: str):
    body = assert_400_outcome(await client.get("AsyncJob", params={"_lastUpdated": date}))
    assert "_lastUpdated" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("version", [*NOT_ASCII_NUMBERS, "9" * 19, "9" * 5000])
async def test_vread_version_in_another_script_or_too_long_is_400(
    client: httpx.AsyncClient, store: JobStore, version: str
):
    await owned_job(store, None)
    response = await client.get(f"AsyncJob/{JOB_ID}/_history/{version}")
    body = assert_400_outcome(response)
    assert "is not a version id" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("etag", ['W/"' + "9" * 5000 + '"', 'W/"' + "9" * 19 + '"', 'W/"\xb2"'])
async def test_if_match_that_is_no_ascii_version_is_400_and_changes_nothing(
    client: httpx.AsyncClient, store: JobStore, etag: str
):
    """'²' is the one digit-like character a latin-1 header can carry; 5000 digits made int()
    raise."""
    await owned_job(store, None)
    job = (await client.get(f"AsyncJob/{JOB_ID}")).json()
    job["status"] = "cancelled"
    headers = {**FHIR_JSON, "If-Match": etag.encode("latin-1")}
    response = await client.put(f"AsyncJob/{JOB_ID}", json=job, headers=headers)
    body = assert_400_outcome(response)
    assert "If-Match" in body["issue"][0]["diagnostics"]
    stored = await store.get(JOB_ID)
    assert stored is not None and stored.version == 1


async def send_raw(app: Any, headers: list[tuple[bytes, bytes]]) -> int:
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
            (b"authorization", ADMIN_HEADERS["Authorization"].encode()),
            *headers,
        ],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status


@pytest.mark.parametrize(
    ("content_length", "status"), [(b"9" * 5000, 413), ("²".encode(), 400), (b"\xb2", 400)]
)
async def test_content_length_too_long_or_not_ascii_is_refused(
    store: JobStore, settings: Settings, content_length: bytes, status: int
):
    app = create_app(settings, store=store)
    assert await send_raw(app, [(b"content-length", content_length)]) == status


@pytest.mark.parametrize("text", ["٧d", "٣", "٣.5"])
def test_duration_setting_in_another_script_is_refused(text: str):
    with pytest.raises(ValidationError):
        Settings(retention=text)


def test_duration_setting_in_ascii_digits_is_read():
    assert Settings(retention="7d", ehealth_eta="90").ehealth_eta.total_seconds() == 90


@pytest.mark.parametrize(("concern", "w"), [("2", 2), ("majority", "majority"), ("²", "²")])
def test_mongodb_write_concern_is_a_count_only_in_ascii_digits(concern: str, w: object):
    assert client_options(Settings(mongodb_write_concern=concern))["w"] == w
