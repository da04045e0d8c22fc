"""The type's history over real HTTP: a server process, paged by fhir-kit-client, each entry's
request as a client sent it, one owner's versions only."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import ADMIN_HEADERS, bearer, make_job, token
from .node_clients import medplum_issues, run_node
from .servers import running_server

FHIR_JSON = {"Content-Type": "application/fhir+json"}
ALICE = "system/AsyncJob.cruds"  # every right on AsyncJob, not an admin


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A server of its own for each test: they count versions."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with running_server(data_dir) as base:
        yield base


def pages(base: str, access_token: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = run_node(
        "history_pages.mjs", {"baseUrl": base, "token": access_token, "resourceType": "AsyncJob"}
    )
    return result


def test_fhir_kit_client_pages_through_every_version_with_the_requests_that_wrote_them(
    server: str,
):
    with httpx.Client(base_url=server + "/", headers=ADMIN_HEADERS | FHIR_JSON) as http:
        posted = []
        for _ in range(12):
            job = make_job()
            del job["id"]
            posted.append(http.post("AsyncJob", json=job).json()["id"])
        for job_id in posted[:5]:
            assert http.put(f"AsyncJob/{job_id}", json=make_job(id=job_id, status="completed"))
        for job_id in posted[5:8]:
            assert http.delete(f"AsyncJob/{job_id}").status_code == 204
        for job_id in ("put-1", "put-2"):
            assert http.put(f"AsyncJob/{job_id}", json=make_job(id=job_id)).status_code == 201
    seen = pages(server, token())
    assert [page["type"] for page in seen] == ["history", "history"]
    assert [len(page["entries"]) for page in seen] == [20, 2]  # 22 versions, 20 a page
    entries = [entry for page in seen for entry in page["entries"]]
    requests = [(e["method"], e["url"], e["status"]) for e in entries]
    assert requests == [
        *(("PUT", f"AsyncJob/{job_id}", "201 Created") for job_id in ("put-2", "put-1")),
        *(("DELETE", f"AsyncJob/{job_id}", "204 No Content") for job_id in reversed(posted[5:8])),
        *(("PUT", f"AsyncJob/{job_id}", "200 OK") for job_id in reversed(posted[:5])),
        *(("POST", "AsyncJob", "201 Created") for _ in posted),
    ]
    assert [e["fullUrl"] for e in entries[-12:]] == [
        f"{server}/AsyncJob/{job_id}" for job_id in reversed(posted)
    ]


def test_a_non_admin_pages_through_its_own_versions_only(server: str):
    with httpx.Client(base_url=server + "/", headers=FHIR_JSON) as http:
        mine = http.put(
            "AsyncJob/alices", json=make_job(id="alices"), headers=bearer("alice", ALICE)
        )
        assert mine.status_code == 201
        theirs = http.put("AsyncJob/bobs", json=make_job(id="bobs"), headers=bearer("bob", ALICE))
        assert theirs.status_code == 201
    seen = pages(server, token("alice", ALICE))
    entries = [entry for page in seen for entry in page["entries"]]
    assert [(e["fullUrl"], e["method"]) for e in entries] == [(f"{server}/AsyncJob/alices", "PUT")]


def test_history_bundles_are_valid_fhir_for_medplum(server: str):
    with httpx.Client(base_url=server + "/", headers=ADMIN_HEADERS | FHIR_JSON) as http:
        assert http.put("AsyncJob/job-1", json=make_job(id="job-1")).status_code == 201
        done = make_job(id="job-1", status="completed")
        assert http.put("AsyncJob/job-1", json=done).status_code == 200
        assert http.put("AsyncJob/job-2", json=make_job(id="job-2")).status_code == 201
        assert http.delete("AsyncJob/job-2").status_code == 204
        bodies = [
            http.get("AsyncJob/_history").json(),
            http.get("AsyncJob/_history", params={"_count": "1"}).json(),
            http.get("AsyncJob/_history", params={"_since": "2999-01-01"}).json(),  # no entry
            http.get("AsyncJob/job-1/_history").json(),
            http.get("AsyncJob/job-2/_history").json(),
        ]
    assert medplum_issues(bodies) == [[]] * len(bodies)
