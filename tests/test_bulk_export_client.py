"""@medplum/core's bulkExport() against the example export service, both real processes:
the kick-off, the polling of Content-Location, the Bulk Data manifest, the files."""

import json
from collections.abc import Iterator

import httpx
import pytest

from fhir_server import STATUSES

from .conftest import ADMIN_HEADERS, make_job, token
from .node_clients import run_node
from .servers import running_example

FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module")
def export_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example's FHIR base URL, with one completed job besides the exports."""
    with running_example("examples.export_service", tmp_path_factory.mktemp("data")) as base:
        url, headers = f"{base}/AsyncJob/done-before", ADMIN_HEADERS | FHIR_JSON
        for status, answer in (("accepted", 201), ("completed", 200)):
            job = make_job(id="done-before", status=status)
            assert httpx.put(url, json=job, headers=headers).status_code == answer
        yield base


def bulk_export(base: str, **options: str) -> dict[str, object]:
    server_root = base.removesuffix("fhir/R4")
    result: dict[str, object] = run_node(
        "bulk_export.mjs", {"baseUrl": server_root, "token": token(), **options}
    )
    return result


def test_bulk_export_kicks_off_polls_and_returns_the_manifest(export_service: str):
    result = bulk_export(export_service, types="AsyncJob")
    assert set(result) == {"manifest"}, result
    manifest = result["manifest"]
    assert isinstance(manifest, dict)
    assert manifest["request"] == f"{export_service}/$export?_type=AsyncJob"
    assert manifest["requiresAccessToken"] is True
    assert manifest["error"] == []
    job_id = manifest["output"][0]["url"].split("/")[-2]
    server_root = export_service.removesuffix("/fhir/R4")
    assert manifest["output"] == [
        {"type": "AsyncJob", "url": f"{server_root}/exports/{job_id}/{status}.ndjson"}
        | {"count": manifest["output"][n]["count"]}
        for n, status in enumerate(STATUSES)
    ]
    job = httpx.get(f"{export_service}/AsyncJob/{job_id}", headers=ADMIN_HEADERS).json()
    assert manifest["transactionTime"] == job["transactionTime"]
    # The files, with the token the manifest asks for: NDJSON of the jobs of each status.
    exported: dict[str, list[str]] = {}
    for item in manifest["output"]:
        response = httpx.get(item["url"], headers=ADMIN_HEADERS)
        assert response.status_code == 200
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert len(lines) == item["count"]
        exported[item["url"].rsplit("/", 1)[1]] = [line["id"] for line in lines]
    assert "done-before" in exported["completed.ndjson"]
    assert job_id in exported["accepted.ndjson"]  # the export itself, while it ran
    assert httpx.get(manifest["output"][0]["url"]).status_code == 401


def test_bulk_export_of_a_type_the_service_does_not_export_throws_its_outcome(
    export_service: str,
):
    result = bulk_export(export_service, types="Patient")
    error = result["error"]
    assert isinstance(error, dict)
    assert error["resourceType"] == "OperationOutcome"
    assert error["issue"][0]["code"] == "not-supported"
    assert error["issue"][0]["expression"] == ["_type"]


def test_bulk_export_since_the_future_lists_empty_files(export_service: str):
    result = bulk_export(export_service, types="AsyncJob", since="2999-01-01T00:00:00Z")
    manifest = result["manifest"]
    assert isinstance(manifest, dict)
    assert [item["count"] for item in manifest["output"]] == [0] * len(STATUSES)


def poll(base: str, status_url: str) -> dict[str, object]:
    server_root = base.removesuffix("fhir/R4")
    result: dict[str, object] = run_node(
        "poll_status.mjs", {"baseUrl": server_root, "token": token(), "statusUrl": status_url}
    )
    return result


def test_polling_a_failed_job_throws_its_outcome_with_the_failures_status(export_service: str):
    url, headers = f"{export_service}/AsyncJob/failed-one", ADMIN_HEADERS | FHIR_JSON
    issue = {"severity": "error", "code": "forbidden", "diagnostics": "no access to the data"}
    outcome = {"resourceType": "OperationOutcome", "issue": [issue]}
    output = {"resourceType": "Parameters", "parameter": [{"name": "outcome", "resource": outcome}]}
    for status, extra in (("accepted", {}), ("error", {"output": output})):
        job = make_job(id="failed-one", status=status, **extra)
        assert httpx.put(url, json=job, headers=headers).is_success
    status_url = f"{export_service}/job/failed-one/status"
    assert httpx.get(status_url, headers=ADMIN_HEADERS).status_code == 403
    assert poll(export_service, status_url) == {"error": outcome}


def test_polling_a_completed_job_that_is_no_export_returns_the_job(export_service: str):
    result = poll(export_service, f"{export_service}/job/done-before/status")["result"]
    assert isinstance(result, dict)
    assert (result["resourceType"], result["id"], result["status"]) == (
        "AsyncJob",
        "done-before",
        "completed",
    )
