"""The time a read takes does not tell whether another owner's job has the id.

The attack: alice times reads of ids. If reading bob's job takes another time than reading an
id no one uses, she learns which ids are taken (and, with ids from bob's requests, which jobs
exist) although both answer the same 404. It needs many versions of large resources in the
store: an unknown id used to cost a search of the versions table whose b-tree held whole
versions (milliseconds), bob's job only a lookup in the live table (microseconds).

Each test times many reads of the cases interleaved in random order (a noisy neighbour
slows them all alike) and compares the median times of "bob's" and "unknown" within a
tolerance: the code before the fix missed it several times over, at the store and over HTTP.
"""

import asyncio
import gc
import random
import shutil
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from fhir_server.auth.ownership import OwnedJobStore
from fhir_server.storage.sqlite import FILE_NAME, SqliteJobStore

from .conftest import bearer, make_job
from .servers import running_server

# Bob's jobs: a few with many large versions (200 versions of 1 MB) and some
# small ones; alice has one job.
LARGE_JOBS, VERSIONS, VERSION_BYTES = 4, 50, 1_000_000
SMALL_JOBS = 12
ALICE_SCOPES = "system/AsyncJob.rs job:read"
ATTEMPTS = 3  # a leak fails every one; noise that fails one seldom fails three


class Data:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.bobs: list[str] = []
        self.alices = ""


async def _fill(data: Data) -> None:
    store = SqliteJobStore(data.data_dir / FILE_NAME)
    await store.open()
    for _ in range(LARGE_JOBS):
        job = make_job(id=str(uuid.uuid4()))
        for version in range(VERSIONS):
            note = f"{version:06d}" + "x" * VERSION_BYTES
            job["output"] = {
                "resourceType": "Parameters",
                "parameter": [{"name": "n", "valueString": note}],
            }
            await store.save(job, expected_version=version, owner="bob")
        data.bobs.append(job["id"])
    for _ in range(SMALL_JOBS):
        job = make_job(id=str(uuid.uuid4()))
        await store.save(job, expected_version=0, owner="bob")
        data.bobs.append(job["id"])
    data.alices = (await store.save(make_job(), expected_version=0, owner="alice")).id
    await store.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Data]:
    data = Data(tmp_path_factory.mktemp("timing") / "data")
    asyncio.run(_fill(data))
    yield data
    shutil.rmtree(data.data_dir)  # 200 MB: not left for pytest to keep with its last runs


def _unknown_ids() -> Iterator[str]:
    while True:
        yield str(uuid.uuid4())  # ids of the same shape as bob's, never used


def _interleaved(rounds: int, cases: list[str]) -> Iterator[str]:
    for _ in range(rounds):
        order = list(cases)
        random.shuffle(order)
        yield from order


def _summary(times: dict[str, list[float]]) -> dict[str, float]:
    """Median microseconds per case."""
    return {case: round(statistics.median(t) * 1e6, 1) for case, t in times.items()}


def _same_cost(medians: dict[str, float], tolerance: float) -> bool:
    theirs, unknown = medians["bob's"], medians["unknown"]
    return max(theirs, unknown) <= tolerance * min(theirs, unknown)


# --- at the store: OwnedJobStore, as every non-admin request reads -------------------------

StoreRead = Callable[[OwnedJobStore, str], Awaitable[Any]]
STORE_READS: dict[str, StoreRead] = {
    "read": lambda store, i: store.get(i),
    "vread": lambda store, i: store.get_version(i, 1),
    "history": lambda store, i: store.history(i),
}


@pytest.mark.parametrize("interaction", list(STORE_READS))
async def test_at_the_store_another_owners_job_reads_as_fast_as_an_unknown_id(
    data: Data, interaction: str
):
    read = STORE_READS[interaction]
    store = SqliteJobStore(data.data_dir / FILE_NAME)
    await store.open()
    alice = OwnedJobStore(store, "alice")
    assert await read(alice, data.alices)  # she sees her own
    unknown = _unknown_ids()
    ids = {"bob's": lambda: random.choice(data.bobs), "unknown": lambda: next(unknown)}
    try:
        for _ in range(ATTEMPTS):
            times: dict[str, list[float]] = {case: [] for case in ids}
            gc.disable()
            try:
                for case in _interleaved(2000, list(ids)):
                    job_id = ids[case]()
                    start = time.perf_counter()
                    found = await read(alice, job_id)
                    times[case].append(time.perf_counter() - start)
                    assert not found
            finally:
                gc.enable()
            medians = _summary(times)
            if _same_cost(medians, tolerance=1.5):
                break
    finally:
        await store.close()
    assert _same_cost(medians, tolerance=1.5), medians


# --- over HTTP: a real server, alice's token, every read that names an id ------------------

HTTP_READS = {
    "read": "{base}/AsyncJob/{id}",
    "vread": "{base}/AsyncJob/{id}/_history/1",
    "history": "{base}/AsyncJob/{id}/_history",
    "eHealth job": "{root}/Jobs/{id}",
}


def test_over_http_another_owners_job_reads_as_fast_as_an_unknown_id(data: Data):
    """All four reads interleaved, so each attempt times them under the same conditions; one
    kept-alive connection of the standard library's client, whose own cost is small."""
    cases = [(read, case) for read in HTTP_READS for case in ("bob's", "unknown")]
    unknown = _unknown_ids()
    headers = bearer("alice", ALICE_SCOPES)
    with running_server(data.data_dir) as base:
        url = urlsplit(base)
        http = HTTPConnection(url.hostname or "", url.port)

        def get(path: str) -> int:
            http.request("GET", path, headers=headers)
            response = http.getresponse()
            response.read()
            return response.status

        assert get(f"{url.path}/AsyncJob/{data.alices}") == 200
        for _ in range(ATTEMPTS):
            times: dict[tuple[str, str], list[float]] = {c: [] for c in cases}
            for read, case in _interleaved(300, cases):
                job_id = random.choice(data.bobs) if case == "bob's" else next(unknown)
                path = HTTP_READS[read].format(base=url.path, root="", id=job_id)
                start = time.perf_counter()
                status = get(path)
                times[read, case].append(time.perf_counter() - start)
                assert status == 404
            medians = {
                read: _summary({case: times[read, case] for case in ("bob's", "unknown")})
                for read in HTTP_READS
            }
            if all(_same_cost(m, tolerance=1.3) for m in medians.values()):
                break
        http.close()
    assert all(_same_cost(m, tolerance=1.3) for m in medians.values()), medians
