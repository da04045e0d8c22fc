"""`fhir-server load` stopped from outside (docker stop, systemd, Ctrl-C) or by a full disk: its
forked workers never outlive it (they had waited on their pipes for good, holding memory and
the caller's pipes), its temporary files go, and what it stored is whole batches that the
same command completes."""

import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fhir_server.jobs import loader, spool
from fhir_server.storage.sqlite import FILE_NAME

from .servers import ROOT, clean_env
from .test_loader_bulk import contents, job, live_rows, load_command, schema, write_ndjson

TOTAL, BATCH = 20_000, 250  # 80 batches
PART_MIN_BYTES = 2**20  # so that the file is validated in two parts, as 16 MiB would be
# The real command, with parts of PART_MIN_BYTES.
LOAD = (
    "import sys; from fhir_server.jobs import spool; "
    f"spool.PART_MIN_BYTES = {PART_MIN_BYTES}; "
    "from fhir_server.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.fixture(scope="module")
def jobs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_ndjson(tmp_path_factory.mktemp("file") / "jobs.ndjson", map(job, range(TOTAL)))
    assert len(spool._parts(path, 2)) == 1  # as the suite's own process would see it
    assert path.stat().st_size >= 2 * PART_MIN_BYTES
    return path


@pytest.fixture(scope="module")
def loaded_whole(jobs_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("whole")
    subprocess.run(command(jobs_file, data_dir), cwd=ROOT, env=clean_env(), check=True)
    return data_dir


def command(path: Path, data_dir: Path) -> list[str]:
    arguments = load_command(path, data_dir, BATCH)[3:]  # after `python -m fhir_server.cli`
    return [sys.executable, "-c", LOAD, *arguments, "--load-workers", "2"]


def stat(process: Path) -> tuple[str, int] | None:
    """A process's state and parent, from /proc/PID/stat; None once it has gone."""
    try:
        state, parent = (process / "stat").read_text().rsplit(")", 1)[1].split()[:2]
    except (FileNotFoundError, ProcessLookupError):
        return None
    return state, int(parent)


def children(pid: int) -> set[int]:
    """The live processes whose parent is pid (a zombie has ended)."""
    found = set()
    for process in Path("/proc").iterdir():
        known = stat(process) if process.name.isdigit() else None
        if known is not None and known[1] == pid and known[0] != "Z":
            found.add(int(process.name))
    return found


def alive(pid: int) -> bool:
    known = stat(Path("/proc") / str(pid))
    return known is not None and known[0] != "Z"


def staging(tmp: Path) -> bool:
    """The second pass has begun: a worker staged a batch."""
    return any(tmp.glob("fhir-server-load-*/batch-*.sqlite3"))


def first_pass(tmp: Path) -> bool:
    return not any(tmp.glob("fhir-server-load-*/*.run"))


PHASES = {"validating": first_pass, "storing": staging}  # what shows the load is in it


def files_up_to(size: int) -> Callable[[], None]:
    """A full disk, as the process sees it: a write past `size` fails (EFBIG; Python ignores
    SIGXFSZ)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def start(
    jobs_file: Path, tmp_path: Path, file_limit: int | None = None
) -> tuple["subprocess.Popen[str]", Path, Path]:
    """The load of jobs_file into tmp_path/data with its own $TMPDIR, tmp_path/tmp; no file
    of it may grow past file_limit bytes, if given."""
    tmp, data_dir = tmp_path / "tmp", tmp_path / "data"
    tmp.mkdir()
    loading = subprocess.Popen(
        command(jobs_file, data_dir),
        cwd=ROOT,
        env={**clean_env(), "TMPDIR": str(tmp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=None if file_limit is None else files_up_to(file_limit),
    )
    return loading, tmp, data_dir


def workers_when(
    loading: "subprocess.Popen[str]", ready: Callable[[], bool], timeout: float = 60
) -> set[int]:
    """The load's worker processes, once `ready()` holds while it has some."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = children(loading.pid)
        if workers and ready():
            return workers
        assert loading.poll() is None, "the load ended before it was stopped"
        time.sleep(0.005)
    raise AssertionError("the load never reached the state to stop it in")


def wait_gone(pids: set[int], timeout: float = 10) -> set[int]:
    deadline = time.monotonic() + timeout
    while (left := {p for p in pids if alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def completes_the_rest(jobs_file: Path, data_dir: Path, whole: Path) -> None:
    with sqlite3.connect(data_dir / FILE_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rerun = subprocess.run(command(jobs_file, data_dir), cwd=ROOT, env=clean_env())
    assert rerun.returncode == 0
    assert contents(data_dir) == contents(whole)
    assert schema(data_dir / FILE_NAME) == schema(whole / FILE_NAME)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("phase", ["validating", "storing"])
def test_a_stopped_load_cleans_up_and_says_so(
    jobs_file: Path, loaded_whole: Path, tmp_path: Path, signum: int, phase: str
):
    loading, tmp, data_dir = start(jobs_file, tmp_path)
    workers = workers_when(loading, lambda: PHASES[phase](tmp))
    loading.send_signal(signum)
    _, stderr = loading.communicate(timeout=60)  # the workers' pipes closed too
    assert loading.returncode == 128 + signum
    assert "stopped: each batch was stored whole or not at all" in stderr
    assert "Traceback" not in stderr and "never retrieved" not in stderr
    assert wait_gone(workers) == set()
    assert list(tmp.iterdir()) == []  # the spooled runs and staged batches removed
    with sqlite3.connect(data_dir / FILE_NAME) as db:  # its indexes made again, WAL back
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert schema(data_dir / FILE_NAME) == schema(loaded_whole / FILE_NAME)
    stored = live_rows(data_dir)
    assert stored == 0 if phase == "validating" else stored < TOTAL
    completes_the_rest(jobs_file, data_dir, loaded_whole)


@pytest.mark.parametrize("phase", ["validating", "storing"])
def test_workers_end_with_a_load_killed_outright(
    jobs_file: Path, loaded_whole: Path, tmp_path: Path, phase: str
):
    """SIGKILL runs no clean-up at all: the kernel ends the workers (PR_SET_PDEATHSIG)."""
    loading, tmp, data_dir = start(jobs_file, tmp_path)
    workers = workers_when(loading, lambda: PHASES[phase](tmp))
    os.kill(loading.pid, signal.SIGKILL)
    loading.communicate(timeout=60)  # had a worker lived on, its copy of the pipes kept this
    assert wait_gone(workers) == set()
    completes_the_rest(jobs_file, data_dir, loaded_whole)


def test_a_full_tmpdir_stores_nothing_and_says_where(
    jobs_file: Path, loaded_whole: Path, tmp_path: Path
):
    """The first pass spools about the file's size to $TMPDIR: each part's run is larger
    than a file may grow here."""
    failed, tmp, data_dir = start(jobs_file, tmp_path, file_limit=PART_MIN_BYTES)
    _, stderr = failed.communicate(timeout=60)
    assert failed.returncode == 1
    assert re.search(rf"load failed: \[Errno 27\] File too large: '{tmp}/fhir-server-load-", stderr)
    assert "Traceback" not in stderr
    assert list(tmp.iterdir()) == []
    assert live_rows(data_dir) == 0
    completes_the_rest(jobs_file, data_dir, loaded_whole)


def test_a_full_store_keeps_whole_batches_and_names_the_store(
    jobs_file: Path, loaded_whole: Path, tmp_path: Path
):
    """The runs fit, the store's file does not: it fails mid-way, its batches whole."""
    failed, _, data_dir = start(jobs_file, tmp_path, file_limit=4 * PART_MIN_BYTES)
    _, stderr = failed.communicate(timeout=60)
    assert failed.returncode == 1
    assert f"(the store: {data_dir})" in stderr
    assert "Traceback" not in stderr
    stored = live_rows(data_dir)
    assert 0 < stored < TOTAL
    assert (stored - BATCH // loader.FIRST_BATCH_FRACTION) % BATCH == 0
    completes_the_rest(jobs_file, data_dir, loaded_whole)


def test_a_store_that_cannot_be_opened_is_reported_in_a_line(jobs_file: Path, tmp_path: Path):
    """A full disk as the store is made: it was a StoreUnavailable traceback."""
    failed, _, data_dir = start(jobs_file, tmp_path, file_limit=2000)
    _, stderr = failed.communicate(timeout=60)
    assert failed.returncode == 1
    assert f"load failed: disk I/O error (the store: {data_dir})" in stderr
    assert "Traceback" not in stderr
