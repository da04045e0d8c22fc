"""Loading files of AsyncJobs into a store."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fhir_server.jobs.loader import find_files, load_paths
from fhir_server.storage.base import JobRecord, JobStore, Write

EXAMPLES = Path(__file__).parent.parent / "examples" / "jobs"
EXAMPLE_ID = "0f6e2a8c-51b7-4d3e-8a9f-2b1c4d6e8f02"


async def test_loading_stores_every_job_of_the_files(store: JobStore):
    report = await load_paths(store, [EXAMPLES])
    files = len(find_files([EXAMPLES]))
    assert (report.files, report.stored, report.errors) == (files, files, [])
    assert await store.get(EXAMPLE_ID) is not None


async def test_loading_the_same_files_again_adds_no_versions(store: JobStore):
    await load_paths(store, [EXAMPLES])
    report = await load_paths(store, [EXAMPLES])
    assert report.stored == 0
    assert [r.version for r in await store.history(EXAMPLE_ID)] == [1]


async def test_loading_a_changed_job_stores_a_new_version(store: JobStore, tmp_path: Path):
    await load_paths(store, [EXAMPLES])
    changed = (EXAMPLES / "completed-export.json").read_text().replace('"completed"', '"error"')
    (tmp_path / "changed.json").write_text(changed)
    report = await load_paths(store, [tmp_path / "changed.json"])
    assert report.stored == 1
    assert [r.version for r in await store.history(EXAMPLE_ID)] == [2, 1]


class RacingLoader:
    """A store on which another process stores the same jobs just before each first save
    (a store without transactions saves one at a time) or save_many."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.raced: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def save(
        self, resource: dict[str, Any], *, expected_version: int, **how: Any
    ) -> JobRecord:
        if resource["id"] not in self.raced:
            self.raced.add(resource["id"])
            await self.store.save(dict(resource), expected_version=expected_version, **how)
        return await self.store.save(resource, expected_version=expected_version, **how)

    async def save_many(self, writes: Sequence[Write]) -> list[JobRecord]:
        for write in writes:
            if write.job_id not in self.raced:
                self.raced.add(write.job_id)
                assert write.resource is not None
                await self.store.save(dict(write.resource), expected_version=0)
        return await self.store.save_many(writes)


async def test_loading_the_jobs_another_worker_just_loaded_succeeds(store: JobStore):
    report = await load_paths(RacingLoader(store), [EXAMPLES])  # type: ignore[arg-type]
    assert (report.stored, report.errors) == (0, [])
    assert [r.version for r in await store.history(EXAMPLE_ID)] == [1]
