"""The real `fhir-server serve` process over TCP, driven by fhirpy like a user would."""

from collections.abc import Iterator

import httpx
import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from .conftest import ADMIN_HEADERS
from .node_clients import medplum_issues
from .servers import ROOT, running_server

EXAMPLES = ROOT / "examples" / "jobs"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("data")
    with running_server(data_dir, "--load", str(EXAMPLES)) as base:
        yield base


@pytest.fixture
def fhir(server: str) -> AsyncFHIRClient:
    return AsyncFHIRClient(server, authorization=ADMIN_HEADERS["Authorization"])


def test_serve_answers_read_over_tcp(server: str):
    response = httpx.get(
        f"{server}/AsyncJob/0f6e2a8c-51b7-4d3e-8a9f-2b1c4d6e8f02", headers=ADMIN_HEADERS
    )
    assert response.status_code == 200
    assert response.json()["status"] == "completed"


def test_forwarded_headers_of_an_unconfigured_peer_change_no_link(server: str):
    """uvicorn trusts X-Forwarded-* from 127.0.0.1 unless told otherwise: any local user could
    have turned the links to https (or the client address to anyone's)."""
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    response = httpx.get(f"{server}/AsyncJob?_count=1", headers={**ADMIN_HEADERS, **forged})
    assert response.status_code == 200
    assert all(link["url"].startswith(f"{server}/") for link in response.json()["link"])


async def test_fhirpy_reads_a_job(fhir: AsyncFHIRClient):
    job = await fhir.reference("AsyncJob", "0f6e2a8c-51b7-4d3e-8a9f-2b1c4d6e8f02").to_resource()
    assert job["status"] == "completed"
    assert job["meta"]["versionId"] == "1"


async def test_fhirpy_unknown_job_raises_resource_not_found(fhir: AsyncFHIRClient):
    with pytest.raises(ResourceNotFound):
        await fhir.reference("AsyncJob", "no-such-job").to_resource()


async def test_fhirpy_searches_by_status(fhir: AsyncFHIRClient):
    jobs = await fhir.resources("AsyncJob").search(status="completed").fetch()
    assert jobs and all(job["status"] == "completed" for job in jobs)


async def test_fhirpy_searches_by_type(fhir: AsyncFHIRClient):
    jobs = await fhir.resources("AsyncJob").search(type="data-migration").fetch()
    assert [job["id"] for job in jobs] == ["5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4e"]


async def test_fhirpy_fetch_all_follows_next_links_across_pages(fhir: AsyncFHIRClient):
    everything = await fhir.resources("AsyncJob").limit(100).fetch()
    paged = await fhir.resources("AsyncJob").limit(2).fetch_all()
    assert len(everything) >= 5
    assert sorted(j["id"] for j in paged) == sorted(j["id"] for j in everything)


async def test_fhirpy_count_reads_the_total(fhir: AsyncFHIRClient):
    everything = await fhir.resources("AsyncJob").limit(100).fetch()
    assert await fhir.resources("AsyncJob").count() == len(everything)
    completed = [j for j in everything if j["status"] == "completed"]
    assert await fhir.resources("AsyncJob").search(status="completed").count() == len(completed)


def test_medplum_validator_finds_nothing_wrong_in_served_jobs(server: str):
    """@medplum/core's validateResource (AsyncJob as Medplum defines it) over what the server
    returns, read and searched; a deliberately broken copy proves the validator is looking."""
    bundle = httpx.get(f"{server}/AsyncJob?_count=100", headers=ADMIN_HEADERS).json()
    jobs = [entry["resource"] for entry in bundle["entry"]]
    read = httpx.get(f"{server}/AsyncJob/{jobs[0]['id']}", headers=ADMIN_HEADERS).json()
    broken = {key: value for key, value in read.items() if key != "request"}
    *served, broken_issues = medplum_issues([*jobs, read, broken])
    assert served == [[]] * (len(jobs) + 1)
    assert [issue["expression"] for issue in broken_issues] == [["AsyncJob.request"]]


def test_answers_name_no_server_software_but_carry_a_date(server: str):
    """A Server header tells a scanner which exploits to try; HTTP asks origin servers for Date."""
    response = httpx.get(f"{server}/metadata")
    assert "server" not in response.headers
    assert response.headers["date"].endswith(" GMT")
