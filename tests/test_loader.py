"""Loading files of AsyncJobs into a store."""

from pathlib import Path

from fhir_server.loader import load_paths
from fhir_server.storage.base import JobStore

EXAMPLES = Path(__file__).parent.parent / "examples" / "jobs"
EXAMPLE_ID = "0f6e2a8c-51b7-4d3e-8a9f-2b1c4d6e8f02"


async def test_loading_stores_every_job_of_the_files(store: JobStore):
    report = await load_paths(store, [EXAMPLES])
    assert (report.files, report.stored, report.errors) == (5, 5, [])
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
