"""Every FHIR response body of a real `fhir-server serve`, over a broad set of requests (reads,
searches, history, writes, operations, errors, metadata, the definitions themselves), is valid
FHIR R4 JSON: @medplum/core's validateResource finds nothing wrong, against FHIR's definitions
and against the server's own AsyncJob profile, and no body holds an empty array or object."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fhir_server.resources.conformance import CONFORMANCE_TYPES

from .conftest import ADMIN_HEADERS
from .node_clients import medplum_issues
from .servers import ROOT, running_server

EXAMPLES = ROOT / "examples" / "jobs"
REQUEST = "https://example.org/fhir/R4/$export"

Answer = tuple[str, int, dict[str, Any]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(tmp_path_factory.mktemp("data"), "--load", str(EXAMPLES)) as base:
        yield base


def new_job(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "AsyncJob", "status": "accepted", "request": REQUEST, **fields}


@pytest.fixture(scope="module")
def answers(server: str) -> list[Answer]:
    """(request, status, JSON body) for each request of a client's working day."""
    found: list[Answer] = []
    with httpx.Client(base_url=server + "/", headers=ADMIN_HEADERS) as http:

        def ask(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            response = http.request(method, path, **kwargs)
            if not response.content:  # 204 (a delete)
                return {}
            body: dict[str, Any] = response.json()
            # FHIR's answers only: a completed export's status is a Bulk Data manifest
            if response.headers["content-type"].startswith("application/fhir+json"):
                found.append((f"{method} {path} {kwargs}", response.status_code, body))
            return body

        # searches: all, paged, counted, subsetted, zero hits, an ignored parameter, POST
        everything = ask("GET", "AsyncJob?_count=100")
        ask("GET", "AsyncJob?_count=2")
        ask("GET", "AsyncJob?_summary=count")
        ask("GET", "AsyncJob?_count=0")
        ask("GET", "AsyncJob?_summary=true")
        ask("GET", "AsyncJob?_elements=status,type")
        ask("GET", "AsyncJob?status=cancelled&type=bulk-export")
        ask("GET", "AsyncJob?colour=blue")
        ask("POST", "AsyncJob/_search", data={"status": "completed"})
        # reads, versions and history of every example job
        for entry in everything["entry"]:
            job_id = entry["resource"]["id"]
            ask("GET", f"AsyncJob/{job_id}")
            ask("GET", f"AsyncJob/{job_id}/_history/1")
            ask("GET", f"AsyncJob/{job_id}/_history")
            ask("GET", f"job/{job_id}/status")
        # a job's life: create, update, cancel, delete; its history and its deleted read
        created = ask("POST", "AsyncJob", json=new_job(type="reindex"))
        job_id = created["id"]
        ask("PUT", f"AsyncJob/{job_id}", json=new_job(id=job_id, type="reindex", output=progress()))
        ask("POST", f"AsyncJob/{job_id}/$cancel")
        ask("POST", f"AsyncJob/{job_id}/$cancel")
        ask("DELETE", f"AsyncJob/{job_id}")
        ask("GET", f"AsyncJob/{job_id}")
        ask("GET", f"AsyncJob/{job_id}/_history")
        ask("PUT", "AsyncJob/put-created", json=new_job(id="put-created", type="bulk-export"))
        migration = new_job(type="data-migration", dataVersion=3, minServerVersion="0.1.0")
        ask("POST", "AsyncJob", json=migration, headers={"Prefer": "return=OperationOutcome"})
        # errors
        ask("GET", "AsyncJob/no-such-job")
        ask("GET", "AsyncJob/bad_id!")
        ask("GET", "AsyncJob?_sort=colour")
        ask("POST", "AsyncJob", json=new_job(type="export"))
        ask("POST", "AsyncJob", json=new_job(type="data-migration", dataVersion=3))
        ask("POST", "AsyncJob", json=new_job(status="completed"))
        ask("GET", "AsyncJob", headers={"Accept": "application/fhir+json; fhirVersion=3.0"})
        ask("GET", "AsyncJob", headers={"Authorization": ""})
        ask("GET", "Patient/1")
        # the CapabilityStatement and every definition it names
        ask("GET", "metadata")
        for resource_type in CONFORMANCE_TYPES:
            for entry in ask("GET", resource_type).get("entry", []):
                ask("GET", entry["fullUrl"])
        ask("GET", "StructureDefinition?url=http://x.org/none")
        ask("PUT", "StructureDefinition/AsyncJob", json={"resourceType": "StructureDefinition"})
    return found


def progress() -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "progress", "valueString": "1"}]}


@pytest.fixture(scope="module")
def definitions(server: str) -> list[dict[str, Any]]:
    """The server's own StructureDefinitions, CodeSystems and ValueSets."""
    found = []
    for resource_type in ("StructureDefinition", "CodeSystem", "ValueSet"):
        bundle = httpx.get(f"{server}/{resource_type}").json()
        found += [entry["resource"] for entry in bundle["entry"]]
    return found


def test_the_requests_cover_every_kind_of_answer(answers: list[Answer]):
    statuses = {status for _, status, _ in answers}
    assert {200, 201, 400, 401, 404, 405, 406, 410, 422} <= statuses
    kinds = {body["resourceType"] for _, _, body in answers}
    assert kinds >= {"AsyncJob", "Bundle", "OperationOutcome", "CapabilityStatement"}
    assert kinds >= set(CONFORMANCE_TYPES)


def test_medplum_finds_nothing_wrong_in_any_answer(
    answers: list[Answer], definitions: list[dict[str, Any]]
):
    issues = medplum_issues([body for _, _, body in answers], definitions)
    wrong = [
        (request, found) for (request, _, _), found in zip(answers, issues, strict=True) if found
    ]
    assert wrong == []


def test_medplum_against_the_profile_catches_jobs_that_break_it(
    answers: list[Answer], definitions: list[dict[str, Any]]
):
    """The negative control: the validator looks at the profile's binding and invariant."""
    [job] = [b for _, _, b in answers if b.get("type") == "data-migration"][:1]
    unknown_type = {**job, "type": "export"}
    no_server_version = {k: v for k, v in job.items() if k != "minServerVersion"}
    in_a_bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": unknown_type}],
    }
    active = {**job, "status": "active"}  # in Medplum's value set, not in ours
    found = medplum_issues([unknown_type, no_server_version, in_a_bundle, active], definitions)
    assert [i["expression"] for i in found[0]] == [["AsyncJob.type"]]
    assert "ajb-1" in str(found[1])
    assert [i["expression"] for i in found[2]] == [["AsyncJob.type"]]
    assert [i["expression"] for i in found[3]] == [["AsyncJob.status"]]


def empty_values(value: Any, path: str = "$") -> list[str]:
    if isinstance(value, dict):
        inner = [found for k, v in value.items() for found in empty_values(v, f"{path}.{k}")]
        return inner if value else [path]
    if isinstance(value, list):
        inner = [found for n, v in enumerate(value) for found in empty_values(v, f"{path}[{n}]")]
        return inner if value else [path]
    return []


def test_no_answer_holds_an_empty_array_or_object(answers: list[Answer]):
    """FHIR JSON never has `[]` or `{}` (zero hits and _summary=count Bundles included)."""
    empty = [(request, found) for request, _, body in answers if (found := empty_values(body))]
    assert empty == []


def test_the_walk_finds_empty_arrays_and_objects():
    assert empty_values({"entry": [], "meta": {"tag": [{}]}}) == ["$.entry", "$.meta.tag[0]"]
