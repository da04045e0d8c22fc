"""examples/jobs/ehealth render the response examples of seed 000 (tests/data/ehealth), and
every curl transcript in docs/ehealth.md is what the server answers for the loaded examples."""

import json
import re
from pathlib import Path

import httpx
import pytest

from fhir_server.jobs.loader import load_paths
from fhir_server.storage.base import JobStore

from .ehealth_helpers import HOST, REQUEST_ID, get

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples" / "jobs" / "ehealth"
SEED = Path(__file__).parent / "data" / "ehealth"
DOC_TRANSCRIPTS = re.findall(
    r"```\n\$ curl -i -H 'X-Request-ID: (\S+)' http://127\.0\.0\.1:8000(\S+)\n"
    r"HTTP/1\.1 (\d+)[^\n]*\n.*?\n\n(\{.*?\n\})\n```",
    (ROOT / "docs" / "ehealth.md").read_text(),
    re.DOTALL,
)


@pytest.fixture
async def examples(store: JobStore) -> JobStore:
    report = await load_paths(store, [EXAMPLES])
    assert report.errors == []
    return store


@pytest.mark.parametrize(
    ("example", "seed"),
    [
        ("pending.json", "seed-000-pending.json"),
        ("processed.json", "seed-000-processed.json"),
        ("failed-forbidden.json", "seed-000-failed.json"),
    ],
)
async def test_example_job_renders_the_seed_response_example(
    client: httpx.AsyncClient, examples: JobStore, example: str, seed: str
):
    job_id = json.loads((EXAMPLES / example).read_text())["id"]
    expected = json.loads((SEED / seed).read_text())
    response = await get(client, f"/Jobs/{job_id}")
    assert response.status_code == expected["meta"]["code"]
    assert response.json() == {
        "data": expected["data"],
        "meta": {**expected["meta"], "url": f"{HOST}/Jobs/{job_id}", "request_id": REQUEST_ID},
    }


async def test_composition_example_is_done_with_its_composition_link(
    client: httpx.AsyncClient, examples: JobStore
):
    job_id = json.loads((EXAMPLES / "composition-done.json").read_text())["id"]
    data = (await get(client, f"/patients/composition/job/{job_id}")).json()["data"]
    assert data["status"] == "DONE"
    assert data["links"] == [
        {"entity": "composition", "href": "composition/d4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f70"}
    ]


def test_ehealth_doc_shows_the_example_transcripts():
    assert len(DOC_TRANSCRIPTS) >= 11


@pytest.mark.parametrize(("request_id", "path", "status", "body"), DOC_TRANSCRIPTS)
async def test_ehealth_doc_transcript_is_what_the_server_answers(
    client: httpx.AsyncClient, store: JobStore, request_id: str, path: str, status: str, body: str
):
    await load_paths(store, [ROOT / "examples" / "jobs"])
    response = await client.get(HOST + path, headers={"X-Request-ID": request_id})
    assert response.status_code == int(status)
    assert "location" not in response.headers
    assert response.json() == json.loads(body.replace("http://127.0.0.1:8000", HOST))
