"""Benchmark harness: the server against the ceiling app, with wrk, at several store sizes.

For each number of jobs: start the server on the configured store (topped up to that many
jobs) pinned to CPU 0, and the ceiling app likewise; drive each with wrk pinned to CPU 1 at a
fixed concurrency, in rounds that each run every row once, right after a run of the ceiling
that its `% ceiling` is taken against (a row is its rounds' median); then write
benchmarks/results.md, results.json and results.png.

    python -m benchmarks.run --sizes 1000 10000 100000 --duration 10 --rounds 3
    python -m benchmarks.run --sizes 1000 --duration 3 --rounds 1   # quick look
    python -m benchmarks.run --env FHIR_SERVER_MONGODB_URI=mongodb://127.0.0.1:27017 \\
        --env FHIR_SERVER_MONGODB_DATABASE=bench_{n}            # another store; {n} = jobs

The store is whatever `fhir-server serve` would use with the same FHIR_SERVER_* environment;
by default the embedded store in benchmarks/out/data/jobs-N, kept between runs so that each
size is seeded once. Runs without a token go to a server started with FHIR_SERVER_AUTH=off,
runs with one to a server checking a real admin token signed with a benchmark secret.

Before/after: --baseline REF also serves commit REF, checked out into a temporary git worktree
and run by that tree's own benchmarks.serve_seeded (same interpreter; cwd and PYTHONPATH make
it import the tree's fhir_server, which each server logs and the harness checks). Both serve
the same jobs: a store seeded by the baseline's code (benchmarks/out/data/baseline-COMMIT/,
kept between runs) and a fresh copy of it for the current code, which may migrate its copy.
Each round runs, per row, the ceiling and then both servers (their order alternating), and the
table gives both servers' figures and current / baseline; --scenarios keeps only some rows.

    python -m benchmarks.run --baseline c436025 --sizes 100000 --duration 10 --rounds 3 \\
        --scenarios read search
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from fhir_server.auth.tokens import FULL_SCOPES, mint

from .baseline import Tree, checkout, current_tree
from .serving import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Known to the harness so it can sign the bearer token the server then verifies.
JWT_SECRET = "benchmark-only-hs256-secret-0123456789abcdef"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
READ_LUA = HERE / "read.lua"
LOG = HERE / "server.log"
SCENARIOS = ("read", "search", "page 1", "page 500")
READ_SHARE, SEARCH_SHARE = 0.5, 0.2  # the targets: share of the ceiling's requests/s
KEPT = 0.95  # a comparison's target: current requests/s over the baseline's, read and search
# The scenarios as --scenarios spells them (spaces dropped).
SCENARIO_OPTIONS = {name.replace(" ", ""): name for name in SCENARIOS}
# Logs where fhir_server was imported from, then runs the tree's own benchmarks.serve_seeded:
# with --baseline one interpreter serves two trees, told apart only by cwd and PYTHONPATH.
LAUNCH = "; ".join(
    [
        "import runpy, sys, fhir_server",
        "print('BENCH fhir_server=' + fhir_server.__file__, file=sys.stderr, flush=True)",
        "runpy.run_module('benchmarks.serve_seeded', run_name='__main__', alter_sys=True)",
    ]
)


@dataclass
class Result:
    jobs: int
    target: str  # "ceiling", "server"; in a comparison "baseline" or "current"
    scenario: str
    auth: bool
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx responses + socket errors: a row with any is not a valid figure
    non_2xx: int = 0
    socket_errors: int = 0
    rounds: int = 1
    # Median over the rounds of rps / the rps of the ceiling run just before it (1 for the
    # ceiling): this VM's speed drifts within seconds, so only a run beside it is comparable.
    share: float = 1.0
    ceiling_rps: float = 0.0  # median of the ceiling runs beside this row's rounds


@dataclass
class Comparison:
    """One row of a before/after run: a scenario against both servers in the same rounds,
    each round right after the same ceiling run."""

    jobs: int
    scenario: str
    auth: bool
    # Median over the rounds of current rps / baseline rps within the round: the two runs of
    # a round are seconds apart, so the machine's drift between rounds cancels out.
    ratio: float
    round_ratios: list[float]
    current: Result
    baseline: Result

    @property
    def errors(self) -> int:
        return self.current.errors + self.baseline.errors


@dataclass(frozen=True)
class Side:
    """A server under test: its name in the table, the tree its code comes from, and its
    store (FHIR_SERVER_DATA_DIR) for one size."""

    name: str
    tree: Tree
    data_dir: Path


def main() -> int:
    args = parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    if args.baseline and any(key in extra_env(args, 0) for key in SHARED_STORE_SETTINGS):
        print(
            "--baseline needs the embedded store: each server gets its own copy of it, "
            f"which {' / '.join(SHARED_STORE_SETTINGS)} in --env would bypass",
            file=sys.stderr,
        )
        return 2
    # A SIGTERM unwinds like Ctrl-C, so the servers stop and the worktree is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    pin = pinning()
    current = current_tree(ROOT)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not args.baseline:
        results: list[Result] = []
        for jobs in args.sizes:
            side = Side("server", current, args.data_dir / f"jobs-{jobs}")
            ceiling, groups = bench_size(args, jobs, pin, [side])
            results += [ceiling.median(), *(run.median() for group in groups for run in group)]
        report: Any = [asdict(r) for r in results]
        text = markdown(results, args)
        plot(results, out / "results.png")
    else:
        ceilings: list[Result] = []
        rows: list[Comparison] = []
        with checkout(ROOT, args.baseline) as baseline:
            for jobs in args.sizes:
                seeded, copy = comparison_stores(args, jobs, pin, baseline)
                sides = [Side("baseline", baseline, seeded), Side("current", current, copy)]
                ceiling, groups = bench_size(args, jobs, pin, sides)
                ceilings.append(ceiling.median())
                rows += [compare(*group) for group in groups]
        report = comparison_json(ceilings, rows, args, baseline, current)
        text = comparison_markdown(ceilings, rows, args, baseline, current)
        plot_comparison(ceilings, rows, out / "results.png")
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "results.md").write_text(text + "\n")
    print((out / "results.md").read_text())
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each row, interleaved; the median counts"
    )
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=64, help="wrk concurrency")
    parser.add_argument("--status", default="accepted", help="status the search filters on")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        type=lambda name: name.replace(" ", "").lower(),
        choices=list(SCENARIO_OPTIONS),
        default=list(SCENARIO_OPTIONS),
        help="rows to run, each with and without a token (default: all)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run git commit REF (e.g. c436025) and compare the current code against it",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the server ({n} becomes the number of jobs)",
    )
    parser.add_argument("--out", type=Path, default=HERE, help="where results.* are written")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=HERE / "out" / "data",
        help="embedded stores, one folder per size (jobs-N), reused between runs",
    )
    args = parser.parse_args()
    chosen = {SCENARIO_OPTIONS[name] for name in args.scenarios}
    args.scenarios = [name for name in SCENARIOS if name in chosen]
    return args


def pinning() -> tuple[list[str], list[str]]:
    """taskset prefixes: server on CPU 0, load generator on CPU 1 (when both exist)."""
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        print("note: not pinning to CPUs (needs taskset and two cores)", file=sys.stderr)
        return [], []
    return ["taskset", "-c", "0"], ["taskset", "-c", "1"]


# Settings in --env that would make both servers of a comparison share one store.
SHARED_STORE_SETTINGS = ("FHIR_SERVER_DATA_DIR", "FHIR_SERVER_MONGODB_URI")


def extra_env(args: argparse.Namespace, jobs: int) -> dict[str, str]:
    """--env KEY=VALUE items, {n} replaced by the number of jobs."""
    items = (item.partition("=") for item in args.env)
    return {key: value.replace("{n}", str(jobs)) for key, _, value in items}


def size_env(args: argparse.Namespace, jobs: int) -> dict[str, str]:
    """The environment of wrk, the ceiling and (with a side's store added) the servers."""
    env = {**os.environ, "BENCH_JOBS": str(jobs), "FHIR_SERVER_JWT_SECRET": JWT_SECRET}
    return {**env, **extra_env(args, jobs)}


def comparison_stores(
    args: argparse.Namespace, jobs: int, pin: tuple[list[str], list[str]], baseline: Tree
) -> tuple[Path, Path]:
    """The baseline's store for a size, seeded by the baseline's own code and kept between
    runs, and a fresh copy of it for the current code: the current code may migrate its copy
    to a newer schema, which the baseline could then no longer open."""
    seeded = args.data_dir / f"baseline-{baseline.commit[:12]}" / f"jobs-{jobs}"
    copy = args.data_dir / "current-copy" / f"jobs-{jobs}"
    side = Side("baseline", baseline, seeded)
    # Up and down once: it tops the store up, and stopping it closes the file cleanly, so
    # that the copy is a consistent one.
    with start_server(args, jobs, pin[0], size_env(args, jobs), False, side):
        pass
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(seeded, copy)
    return seeded, copy


def bench_size(
    args: argparse.Namespace, jobs: int, pin: tuple[list[str], list[str]], sides: list[Side]
) -> tuple["Run", list[list["Run"]]]:
    """Every scenario at one store size against each side's servers, in rounds: each round
    runs every row once, right after a run of the ceiling, so a slow spell of the machine
    hits both sides of a ratio. Returns the ceiling and, per row, one Run for each side."""
    server_pin, wrk_pin = pin
    env = size_env(args, jobs)
    token = mint(JWT_SECRET.encode(), "benchmark-admin", FULL_SCOPES, timedelta(hours=12))
    with contextlib.ExitStack() as servers:
        per_side: list[list[Run]] = []
        for side in sides:
            runs: list[Run] = []
            # One after the other: the first tops the store up, the second finds it full.
            for auth in (False, True):
                server = start_server(args, jobs, server_pin, env, auth, side)
                base = servers.enter_context(server)
                runs += server_runs(args, jobs, base, token if auth else None, side.name)
            per_side.append(runs)
        groups = [list(group) for group in zip(*per_side, strict=True)]
        base = servers.enter_context(start_ceiling(server_pin, env))
        ceiling = Run(Result(jobs, "ceiling", "read", False, 0, 0, 0, 0), f"{base}/", READ_LUA)
        every = [ceiling, *(run for group in groups for run in group)]
        print(f"== {jobs} jobs: {estimate(args, groups)}", file=sys.stderr)
        for run in every:  # warm-up: first requests, page caches, cached tokens
            drive(wrk_pin, run.url, args.warmup, args.connections, env, run.lua, run.token)
        for round_number in range(1, args.rounds + 1):
            for index, group in enumerate(groups):
                beside = measure(args, env, wrk_pin, ceiling, round_number)
                # The sides take turns at running first, so that neither is always the one
                # measured right after the ceiling.
                turn = (round_number + index) % len(group)
                for run in group[turn:] + group[:turn]:
                    measure(args, env, wrk_pin, run, round_number)
                    run.ceiling_beside.append(beside[0])
    return ceiling, groups


def estimate(args: argparse.Namespace, groups: list[list["Run"]]) -> str:
    """How long the measuring takes from here (wrk time only; settling adds a little)."""
    runs = args.rounds * sum(1 + len(group) for group in groups)
    warmup = (1 + sum(len(group) for group in groups)) * args.warmup
    seconds = runs * args.duration + warmup
    return f"{runs} wrk runs of {args.duration} s, about {seconds / 60:.1f} min"


def compare(baseline: "Run", current: "Run") -> Comparison:
    ratios = [
        c[0] / b[0] if b[0] else 0.0 for b, c in zip(baseline.rounds, current.rounds, strict=True)
    ]
    row = current.row
    return Comparison(
        row.jobs,
        row.scenario,
        row.auth,
        statistics.median(ratios),
        [round(r, 4) for r in ratios],
        current.median(),
        baseline.median(),
    )


def measure(
    args: argparse.Namespace, env: dict[str, str], pin: list[str], run: "Run", round_number: int
) -> tuple[float, float, float, int, int, int]:
    """One wrk run of a row, recorded in its rounds."""
    settle(run.url)
    stats = drive(pin, run.url, args.duration, args.connections, env, run.lua, run.token)
    run.rounds.append(stats)
    flag = "  <-- ERRORS: not a valid figure" if stats[3] else ""
    row = run.row
    print(
        f"   round {round_number} {row.target:8} {row.scenario:9} "
        f"token={row.auth!s:5} {stats}{flag}",
        file=sys.stderr,
    )
    return stats


@dataclass
class Run:
    """One row of the table: what to drive, and the figures of each round."""

    row: Result
    url: str
    lua: Path | None = None
    token: str | None = None
    rounds: list[tuple[float, float, float, int, int, int]] = field(default_factory=list)
    ceiling_beside: list[float] = field(default_factory=list)  # the ceiling run before each round

    def median(self) -> Result:
        """The row with each figure the median of the rounds; errors are added up."""
        rps, p50, p99 = (statistics.median(r[i] for r in self.rounds) for i in range(3))
        errors, non_2xx, socket_errors = (int(sum(r[i] for r in self.rounds)) for i in (3, 4, 5))
        beside = self.ceiling_beside or [r[0] for r in self.rounds]  # the ceiling: itself
        shares = [r[0] / c for r, c in zip(self.rounds, beside, strict=True) if c]
        row = self.row
        return Result(
            row.jobs, row.target, row.scenario, row.auth, rps, p50, p99, errors,
            non_2xx, socket_errors, rounds=len(self.rounds),
            share=statistics.median(shares) if shares else 1.0,
            ceiling_rps=statistics.median(beside) if beside else 0.0,
        )  # fmt: skip


@contextlib.contextmanager
def start_server(
    args: argparse.Namespace, jobs: int, pin: list[str], env: dict[str, str], auth: bool, side: Side
) -> Iterator[str]:
    """A side's server on its store for the size (auth off for the runs without a token),
    run from the side's tree; yields its base URL once it has seeded and answers."""
    port = free_port()
    print(f"== {jobs} jobs, {side.name}, token={auth}: seeding and starting", file=sys.stderr)
    command = [sys.executable, "-c", LAUNCH, "--jobs", str(jobs), "--port", str(port)]
    tree = str(side.tree.path)
    server_env = {
        **env,
        "FHIR_SERVER_DATA_DIR": str(side.data_dir),
        **extra_env(args, jobs),  # may override the data dir (but not under --baseline)
        "FHIR_SERVER_AUTH": "on" if auth else "off",
        "PYTHONPATH": os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")])),
    }
    base = f"http://127.0.0.1:{port}"
    seed_timeout = 120 + jobs / 50  # seeding goes through the store API, one save per job
    server = running([*pin, *command], server_env, f"{base}/healthz", seed_timeout, base, tree)
    with server as url:
        check_import(server.new_log(), side.tree.path)
        yield url


def check_import(log: str, tree: Path) -> None:
    """Stop unless the server imported fhir_server from its own tree (as LAUNCH logs it);
    also show how long seeding took."""
    imported = re.findall(r"^BENCH fhir_server=(.+)$", log, re.M)
    if not imported or not Path(imported[-1]).resolve().is_relative_to(tree.resolve()):
        found = imported[-1] if imported else "nothing logged"
        raise SystemExit(f"server did not import fhir_server from {tree}: {found}; see {LOG}")
    print(f"   fhir_server from {imported[-1]}", file=sys.stderr)
    for line in re.findall(r"^BENCH store=.+$", log, re.M):
        print(f"   {line}", file=sys.stderr)


def start_ceiling(pin: list[str], env: dict[str, str]) -> "running":
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "benchmarks.serve_ceiling", str(port)]
    return running([*pin, *command], env, f"{base}/fhir/R4/AsyncJob/bench-0000000", 60, base)


def server_runs(
    args: argparse.Namespace, jobs: int, base: str, token: str | None, target: str
) -> list[Run]:
    """The chosen scenarios (read, search, page 1, page 500) against one server."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    first_page = f"{base}/fhir/R4/AsyncJob?_count={page_size(jobs)}"
    runs = []
    for name in args.scenarios:
        lua = None
        if name == "read":
            url, lua = f"{base}/", READ_LUA
        elif name == "search":
            url = f"{base}/fhir/R4/AsyncJob?status={args.status}&_count=20"
        elif name == "page 1":
            url = first_page
        else:  # page 500: this server's own cursor, followed there
            url = follow_next(first_page, 499, headers)
        row = Result(jobs, target, name, token is not None, 0, 0, 0, 0)
        runs.append(Run(row, url, lua, token))
    return runs


def page_size(jobs: int) -> int:
    """The _count that makes page 500 exist: 20, or less for small stores."""
    return max(1, min(20, jobs // 500))


def settle(url: str, seconds: float = 60) -> None:
    """Wait until the server has drained the previous run's queued requests."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        httpx.get(url, timeout=seconds)
        if time.monotonic() - started < 0.05:
            return
        time.sleep(0.2)


def follow_next(url: str, times: int, headers: dict[str, str]) -> str:
    """The URL of the page `times` next-links after url."""
    with httpx.Client(timeout=30, headers=headers) as http:
        for _ in range(times):
            links = http.get(url).raise_for_status().json()["link"]
            url = next(link["url"] for link in links if link["relation"] == "next")
    return url


class running:
    """A server process for the duration of a with-block; stopped (by its pid) at exit."""

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        probe: str,
        timeout: float,
        base: str = "",
        cwd: str | Path = ROOT,
    ):
        self.command, self.env, self.probe, self.timeout = command, env, probe, timeout
        self.base, self.cwd = base, cwd
        self.log_start = LOG.stat().st_size if LOG.exists() else 0
        self.log = open(LOG, "ab")  # noqa: SIM115

    def __enter__(self) -> str:
        """The server's base URL, once it answers its probe."""
        self.process = subprocess.Popen(
            self.command, cwd=self.cwd, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log
        )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited; see {LOG}")
            try:
                if httpx.get(self.probe, timeout=1).status_code == 200:
                    return self.base
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise SystemExit(f"server did not come up in {self.timeout:.0f}s")

    def new_log(self) -> str:
        """What was logged since this process was created (by it, and any other server)."""
        with open(LOG, "rb") as log:
            log.seek(self.log_start)
            return log.read().decode(errors="replace")

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def drive(
    pin: list[str],
    url: str,
    seconds: int,
    connections: int,
    env: dict[str, str],
    lua: Path | None,
    token: str | None = None,
) -> tuple[float, float, float, int, int, int]:
    """Run wrk; (requests/s, p50 ms, p99 ms, errors, non-2xx/3xx, socket errors)."""
    command = [*pin, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["--timeout", "5s"]
    if lua is not None:
        command += ["-s", str(lua)]
    if token is not None:
        command += ["-H", f"Authorization: Bearer {token}"]
    output = subprocess.run(
        [*command, url], env=env, capture_output=True, text=True, check=True
    ).stdout
    return parse_wrk(output)


def parse_wrk(output: str) -> tuple[float, float, float, int, int, int]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.M))
    non_2xx = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = sum(int(n) for n in socket.groups()) if socket else 0
    errors = non_2xx + socket_errors
    return rps, _ms(percentiles["50"]), _ms(percentiles["99"]), errors, non_2xx, socket_errors


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return round(float(number) * _UNITS[unit], 3)


def markdown(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        f"wrk: 1 thread, {args.connections} connections, {args.duration} s per run; server and"
        f" ceiling on CPU 0, wrk on CPU 1. {args.rounds} rounds per size, each running every"
        " server row once, right after a run of the ceiling app's read at the same size; a"
        " row's figures are the medians of its rounds, `ceiling beside` the median of the"
        " ceiling runs just before them, `% ceiling` the median of its requests/s against"
        " the ceiling run just before (the ceiling row: all its runs)."
        " Page size for page 1 / page 500 is min(20, jobs / 500)."
        " Rows without a token ran against a server with FHIR_SERVER_AUTH=off, rows with one"
        " against a server verifying an HS256 admin token on every request. `errors` ="
        " non-2xx responses + socket errors; a row with errors is flagged and counts for no"
        " target.",
        "",
        f"Machine: {machine()}.",
        "",
        "| jobs | target | scenario | bearer token | requests/s | ceiling beside | % ceiling"
        " | p50 ms | p99 ms | errors |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        share = f"{100 * r.share:.0f} %"
        errors = f"**{r.errors} (invalid)**" if r.errors else "0"
        lines.append(
            f"| {r.jobs:,} | {r.target} | {r.scenario} | {'yes' if r.auth else 'no'} |"
            f" {r.rps:,.0f} | {r.ceiling_rps:,.0f} | {share} | {r.p50_ms:.2f} | {r.p99_ms:.2f}"
            f" | {errors} |"
        )
    lines += ["", *summary(results)]
    return "\n".join(lines)


def machine() -> str:
    """CPU model, cores and memory, and the Python running the benchmark."""
    cpu = "unknown CPU"
    memory = ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.+)", info).group(1).strip()  # type: ignore[union-attr]
        kib = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        memory = f", {int(kib.group(1)) / 2**20:.0f} GiB" if kib else ""
    except (OSError, AttributeError):
        pass
    python = ".".join(map(str, sys.version_info[:3]))
    return f"{cpu}, {os.cpu_count()} cores{memory}; Python {python}"


def summary(results: list[Result]) -> list[str]:
    """The targets of benchmarks/README.md, computed from this run: met, NOT met, or invalid."""

    def get(jobs: int, scenario: str, auth: bool = False, target: str = "server") -> Result | None:
        key = (jobs, scenario, auth, target)
        return next((r for r in results if (r.jobs, r.scenario, r.auth, r.target) == key), None)

    def check(label: str, rows: list[Result | None], value: float, ok: bool, goal: str) -> str:
        if any(r is None for r in rows):
            return f"- {label}: n/a"
        if any(r.errors for r in rows if r is not None):
            return f"- {label}: **invalid** (a run had errors)"
        verdict = "met" if ok else "**NOT met**"
        return f"- {label}: {value:.2f} (target {goal}): {verdict}"

    sizes = sorted({r.jobs for r in results})
    lines = ["Targets:", ""]
    for jobs in sizes:
        top = get(jobs, "read", target="ceiling")
        for auth in (False, True):
            tag = f"{jobs:,} jobs{', token' if auth else ''}"
            read, search = get(jobs, "read", auth), get(jobs, "search", auth)
            first, deep = get(jobs, "page 1", auth), get(jobs, "page 500", auth)
            if top and read:
                lines.append(
                    check(
                        f"{tag}: read / ceiling",
                        [read, top],
                        read.share,
                        read.share >= READ_SHARE,
                        f"≥ {READ_SHARE:.2f}",
                    )
                )
            if top and search:
                lines.append(
                    check(
                        f"{tag}: search / ceiling",
                        [search, top],
                        search.share,
                        search.share >= SEARCH_SHARE,
                        f"≥ {SEARCH_SHARE:.2f}",
                    )
                )
            if first and deep:
                deep_ratio = deep.rps / first.rps if first.rps else 0.0
                lines.append(
                    check(
                        f"{tag}: page 500 / page 1 throughput",
                        [deep, first],
                        deep_ratio,
                        0.7 <= deep_ratio <= 1.3,
                        "0.70–1.30",
                    )
                )
        for scenario in ("read", "search"):
            plain, token = get(jobs, scenario), get(jobs, scenario, True)
            if plain and token:
                kept = token.rps / plain.rps if plain.rps else 0.0
                lines.append(
                    check(
                        f"{jobs:,} jobs: {scenario} with token / without",
                        [plain, token],
                        kept,
                        kept > 0.5,
                        "> 0.50",
                    )
                )
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        for auth in (False, True):
            for scenario in ("read", "search"):
                a, b = get(small, scenario, auth), get(large, scenario, auth)
                if a and b:
                    growth = b.p99_ms / a.p99_ms if a.p99_ms else 0.0
                    lines.append(
                        check(
                            f"p99 {scenario}{' with token' if auth else ''}:"
                            f" {large:,} jobs / {small:,} jobs",
                            [a, b],
                            growth,
                            growth <= 1.3,
                            "≤ 1.30",
                        )
                    )
    return lines


def plot(results: list[Result], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    series = [
        ("ceiling", "read", False),
        *(("server", s, a) for a in (False, True) for s in ("read", "search", "page 500")),
    ]
    for target, scenario, auth in series:
        rows = sorted(
            (r for r in results if (r.target, r.scenario, r.auth) == (target, scenario, auth)),
            key=lambda r: r.jobs,
        )
        if not rows:
            continue
        label = f"{target} {scenario}" + (" + token" if auth else "")
        style = "--" if auth else "-"
        jobs = [r.jobs for r in rows]
        left.plot(jobs, [r.rps for r in rows], style, marker="o", label=label)
        if not auth:
            line = right.plot(jobs, [r.p99_ms for r in rows], "-", marker="o", label=f"{label} p99")
            right.plot(
                jobs,
                [r.p50_ms for r in rows],
                ":",
                marker=".",
                color=line[0].get_color(),
                label=f"{label} p50",
            )
    for axis, title, unit in ((left, "Throughput", "requests/s"), (right, "Latency", "ms")):
        axis.set_xscale("log")
        axis.set_xlabel("jobs stored")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    left.set_ylim(bottom=0)
    right.set_yscale("log")  # the ceiling and a slow search differ by orders of magnitude
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def comparison_json(
    ceilings: list[Result],
    rows: list[Comparison],
    args: argparse.Namespace,
    baseline: Tree,
    current: Tree,
) -> dict[str, Any]:
    settings = ("sizes", "scenarios", "duration", "rounds", "warmup", "connections", "status")
    return {
        "baseline": {"ref": baseline.label, "commit": baseline.commit},
        "current": {"commit": current.commit, "uncommitted_changes": current.uncommitted},
        "settings": {name: getattr(args, name) for name in settings},
        "machine": machine(),
        "ceiling": [asdict(c) for c in ceilings],
        "rows": [asdict(r) for r in rows],
    }


def comparison_markdown(
    ceilings: list[Result],
    rows: list[Comparison],
    args: argparse.Namespace,
    baseline: Tree,
    current: Tree,
) -> str:
    changes = " with uncommitted changes" if current.uncommitted else ""
    lines = [
        f"Before/after: **current** = the working tree at `{current.commit[:12]}`{changes};"
        f" **baseline** = `{baseline.label}` (`{baseline.commit[:12]}`), served from a"
        " temporary git worktree by its own code. Both serve the same jobs: a store seeded by"
        " the baseline's code, and a copy of it for the current code.",
        "",
        f"wrk: 1 thread, {args.connections} connections, {args.duration} s per run; servers and"
        f" ceiling on CPU 0, wrk on CPU 1. {args.rounds} round(s) per size; in each, every row runs"
        " the ceiling app's read, then the baseline and the current server (which of the two"
        " goes first alternates). A server's requests/s and latencies are the medians of its"
        " rounds; `current / baseline` is the median over the rounds of the two servers'"
        " requests/s within the round (in brackets: the lowest and the highest round);"
        " `% ceiling` is the median of a server's requests/s over the ceiling run just before"
        " it, `ceiling beside` the median of those ceiling runs. Rows without a token ran"
        " against servers with FHIR_SERVER_AUTH=off, rows with one against servers verifying"
        " an HS256 admin token on every request. `errors` = non-2xx responses + socket errors"
        " of both servers; a row with errors counts for no target.",
        "",
        f"Machine: {machine()}.",
        "",
        "| jobs | scenario | bearer token | current req/s | baseline req/s | current / baseline"
        " | ceiling beside | current % ceiling | baseline % ceiling | current p50 / p99 ms"
        " | baseline p50 / p99 ms | errors |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        now, before = r.current, r.baseline
        ratio = f"{r.ratio:.2f}"
        if len(r.round_ratios) > 1:
            ratio += f" ({min(r.round_ratios):.2f}–{max(r.round_ratios):.2f})"
        errors = f"**{r.errors} (invalid)**" if r.errors else "0"
        lines.append(
            f"| {r.jobs:,} | {r.scenario} | {'yes' if r.auth else 'no'} | {now.rps:,.0f}"
            f" | {before.rps:,.0f} | {ratio} | {now.ceiling_rps:,.0f}"
            f" | {100 * now.share:.0f} % | {100 * before.share:.0f} %"
            f" | {now.p50_ms:.2f} / {now.p99_ms:.2f} | {before.p50_ms:.2f} / {before.p99_ms:.2f}"
            f" | {errors} |"
        )
    lines += ["", "Ceiling (bare Starlette + Uvicorn read), median of all its runs:", ""]
    for c in ceilings:
        lines.append(
            f"- {c.jobs:,} jobs: {c.rps:,.0f} requests/s, p50 {c.p50_ms:.2f} ms,"
            f" p99 {c.p99_ms:.2f} ms ({c.rounds} runs{', with errors' if c.errors else ''})"
        )
    lines += ["", *comparison_summary(rows)]
    return "\n".join(lines)


def comparison_summary(rows: list[Comparison]) -> list[str]:
    """The acceptance criterion at each size run: read and search keep ≥ KEPT of the
    baseline's throughput, and the current code still meets the ceiling targets."""

    def verdict(label: str, row: Comparison, value: float, goal: float) -> str:
        if row.errors:
            return f"- {label}: **invalid** (a run had errors)"
        met = "met" if value >= goal else "**NOT met**"
        return f"- {label}: {value:.2f} (target ≥ {goal:.2f}): {met}"

    lines = ["Targets (the acceptance criterion judges them at 100,000 jobs):", ""]
    for r in rows:
        if r.scenario not in ("read", "search"):
            continue
        tag = f"{r.jobs:,} jobs{', token' if r.auth else ''}: {r.scenario}"
        share_goal = READ_SHARE if r.scenario == "read" else SEARCH_SHARE
        lines.append(verdict(f"{tag} current / baseline", r, r.ratio, KEPT))
        lines.append(verdict(f"{tag} current / ceiling", r, r.current.share, share_goal))
    return lines


def plot_comparison(ceilings: list[Result], rows: list[Comparison], path: Path) -> None:
    """Per row: the ceiling beside it, the baseline and the current server, side by side."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return
    figure, axis = plt.subplots(figsize=(max(6, 1.4 * len(rows) + 2), 4.5))
    width = 0.27
    for offset, label, color, values in (
        (-width, "ceiling beside", "lightgray", [r.current.ceiling_rps for r in rows]),
        (0.0, "baseline", "tab:blue", [r.baseline.rps for r in rows]),
        (width, "current", "tab:orange", [r.current.rps for r in rows]),
    ):
        axis.bar([i + offset for i in range(len(rows))], values, width, label=label, color=color)
    for i, r in enumerate(rows):
        axis.annotate(
            f"×{r.ratio:.2f}", (i + width, r.current.rps), ha="center", va="bottom", fontsize=8
        )
    axis.set_xticks(
        range(len(rows)),
        [f"{r.jobs:,}\n{r.scenario}{' + token' if r.auth else ''}" for r in rows],
        fontsize=8,
    )
    axis.set_ylabel("requests/s")
    axis.set_title("Current against baseline (× = current / baseline)")
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
