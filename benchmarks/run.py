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
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx

from fhir_server.auth.tokens import FULL_SCOPES, mint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Known to the harness so it can sign the bearer token the server then verifies.
JWT_SECRET = "benchmark-only-hs256-secret-0123456789abcdef"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
READ_LUA = HERE / "read.lua"


@dataclass
class Result:
    jobs: int
    target: str  # "server" or "ceiling"
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


def main() -> int:
    args = parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    pin = pinning()
    results: list[Result] = []
    for jobs in args.sizes:
        results += bench_size(args, jobs, pin)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    (out / "results.md").write_text(markdown(results, args) + "\n")
    plot(results, out / "results.png")
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
    return parser.parse_args()


def pinning() -> tuple[list[str], list[str]]:
    """taskset prefixes: server on CPU 0, load generator on CPU 1 (when both exist)."""
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        print("note: not pinning to CPUs (needs taskset and two cores)", file=sys.stderr)
        return [], []
    return ["taskset", "-c", "0"], ["taskset", "-c", "1"]


def bench_size(
    args: argparse.Namespace, jobs: int, pin: tuple[list[str], list[str]]
) -> list[Result]:
    """Every scenario at one store size, in rounds: each round drives every server scenario
    once, each right after a run of the ceiling, so a slow spell of the machine hits both
    sides of a ratio. A row is the median of its rounds."""
    server_pin, wrk_pin = pin
    env = {
        **os.environ,
        "BENCH_JOBS": str(jobs),
        "FHIR_SERVER_DATA_DIR": str(args.data_dir / f"jobs-{jobs}"),
        "FHIR_SERVER_JWT_SECRET": JWT_SECRET,
    }
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value.replace("{n}", str(jobs))
    token = mint(JWT_SECRET.encode(), "benchmark-admin", FULL_SCOPES, timedelta(hours=12))
    runs: list[Run] = []
    with contextlib.ExitStack() as servers:
        # One after the other: the first tops the store up, the second finds it full.
        for auth in (False, True):
            base = servers.enter_context(start_server(args, jobs, server_pin, env, auth))
            runs += server_runs(args, jobs, base, token if auth else None)
        base = servers.enter_context(start_ceiling(server_pin, env))
        ceiling = Run(Result(jobs, "ceiling", "read", False, 0, 0, 0, 0), f"{base}/", READ_LUA)
        for run in [ceiling, *runs]:  # warm-up: first requests, page caches, cached tokens
            drive(wrk_pin, run.url, args.warmup, args.connections, env, run.lua, run.token)
        for round_number in range(1, args.rounds + 1):
            for run in runs:
                beside = measure(args, env, wrk_pin, ceiling, round_number)
                measure(args, env, wrk_pin, run, round_number)
                run.ceiling_beside.append(beside[0])
    return [ceiling.median(), *(run.median() for run in runs)]


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
        f"   round {round_number} {row.target:7} {row.scenario:9} "
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
        errors, non_2xx, socket_errors = (sum(r[i] for r in self.rounds) for i in (3, 4, 5))
        beside = self.ceiling_beside or [r[0] for r in self.rounds]  # the ceiling: itself
        shares = [r[0] / c for r, c in zip(self.rounds, beside, strict=True) if c]
        row = self.row
        return Result(
            row.jobs, row.target, row.scenario, row.auth, rps, p50, p99, errors,
            non_2xx, socket_errors, rounds=len(self.rounds),
            share=statistics.median(shares) if shares else 1.0,
            ceiling_rps=statistics.median(beside) if beside else 0.0,
        )  # fmt: skip


def start_server(
    args: argparse.Namespace, jobs: int, pin: list[str], env: dict[str, str], auth: bool
) -> "running":
    """The server on the size's store: auth off for the runs without a token."""
    port = free_port()
    print(f"== {jobs} jobs, token={auth}: seeding and starting", file=sys.stderr)
    command = [sys.executable, "-m", "benchmarks.serve_seeded"]
    command += ["--jobs", str(jobs), "--port", str(port)]
    server_env = {**env, "FHIR_SERVER_AUTH": "on" if auth else "off"}
    base = f"http://127.0.0.1:{port}"
    seed_timeout = 120 + jobs / 50  # seeding goes through the store API, one save per job
    return running([*pin, *command], server_env, f"{base}/healthz", seed_timeout, base)


def start_ceiling(pin: list[str], env: dict[str, str]) -> "running":
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "benchmarks.serve_ceiling", str(port)]
    return running([*pin, *command], env, f"{base}/fhir/R4/AsyncJob/bench-0000000", 60, base)


def server_runs(args: argparse.Namespace, jobs: int, base: str, token: str | None) -> list[Run]:
    """The four scenarios against one server: read, search, page 1 and page 500."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    first_page = f"{base}/fhir/R4/AsyncJob?_count={page_size(jobs)}"
    scenarios = [
        ("read", f"{base}/", READ_LUA),
        ("search", f"{base}/fhir/R4/AsyncJob?status={args.status}&_count=20", None),
        ("page 1", first_page, None),
        ("page 500", follow_next(first_page, 499, headers), None),
    ]
    return [
        Run(Result(jobs, "server", name, token is not None, 0, 0, 0, 0), url, lua, token)
        for name, url, lua in scenarios
    ]


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
        self, command: list[str], env: dict[str, str], probe: str, timeout: float, base: str = ""
    ):
        self.command, self.env, self.probe, self.timeout = command, env, probe, timeout
        self.base = base
        self.log = open(HERE / "server.log", "ab")  # noqa: SIM115

    def __enter__(self) -> str:
        """The server's base URL, once it answers its probe."""
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log
        )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited; see {HERE / 'server.log'}")
            try:
                if httpx.get(self.probe, timeout=1).status_code == 200:
                    return self.base
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise SystemExit(f"server did not come up in {self.timeout:.0f}s")

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
            if not (top and read and search and first and deep):
                continue
            lines.append(
                check(
                    f"{tag}: read / ceiling", [read, top], read.share, read.share >= 0.5, "≥ 0.50"
                )
            )
            lines.append(
                check(
                    f"{tag}: search / ceiling",
                    [search, top],
                    search.share,
                    search.share >= 0.2,
                    "≥ 0.20",
                )
            )
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


if __name__ == "__main__":
    sys.exit(main())
