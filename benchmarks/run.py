"""Benchmark harness: the server against the ceiling app, with wrk, at several store sizes.

For each number of jobs: start the server on the configured store (topped up to that many
jobs) pinned to CPU 0, and the ceiling app likewise; drive each with wrk pinned to CPU 1 at a
fixed concurrency; then write benchmarks/results.md, results.json and results.png.

    python -m benchmarks.run --sizes 1000 10000 100000 --duration 10
    python -m benchmarks.run --sizes 1000 --duration 3          # quick look
    python -m benchmarks.run --env FHIR_SERVER_MONGODB_URI=mongodb://127.0.0.1:27017 \\
        --env FHIR_SERVER_MONGODB_DATABASE=bench_{n}            # another store; {n} = jobs

The store is whatever `fhir-server serve` would use with the same FHIR_SERVER_* environment.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOKEN_HEADER = "Authorization: Bearer benchmark-token"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class Result:
    jobs: int
    target: str  # "server" or "ceiling"
    scenario: str
    auth: bool
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Scenario:
    name: str
    url: str
    lua: Path | None = None


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
    server_pin, wrk_pin = pin
    env = {**os.environ, "BENCH_JOBS": str(jobs)}
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value.replace("{n}", str(jobs))
    results: list[Result] = []
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    seed_timeout = 120 + jobs / 50  # seeding goes through the store API, one save per job
    print(f"== {jobs} jobs: seeding and starting the server", file=sys.stderr)
    command = [
        sys.executable,
        "-m",
        "benchmarks.serve_seeded",
        "--jobs",
        str(jobs),
        "--port",
        str(port),
    ]
    with running([*server_pin, *command], env, f"{base}/healthz", seed_timeout):
        size = page_size(jobs)
        search = f"{base}/fhir/R4/AsyncJob?status={args.status}&_count=20"
        first_page = f"{base}/fhir/R4/AsyncJob?_count={size}"
        scenarios = [
            Scenario("read", f"{base}/", HERE / "read.lua"),
            Scenario("search", search),
            Scenario("page 1", first_page),
            Scenario("page 500", follow_next(first_page, 499)),
        ]
        drive(wrk_pin, f"{base}/", args.warmup, args.connections, env, HERE / "read.lua")
        for auth in (False, True):
            for scenario in scenarios:
                settle(f"{base}/healthz")
                stats = drive(
                    wrk_pin, scenario.url, args.duration, args.connections, env, scenario.lua, auth
                )
                results.append(Result(jobs, "server", scenario.name, auth, *stats))
                print(f"   server {scenario.name:9} auth={auth!s:5} {stats}", file=sys.stderr)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "benchmarks.serve_ceiling", str(port)]
    with running([*server_pin, *command], env, f"{base}/fhir/R4/AsyncJob/bench-0000000", 60):
        drive(wrk_pin, f"{base}/", args.warmup, args.connections, env, HERE / "read.lua")
        settle(f"{base}/fhir/R4/AsyncJob/bench-0000000")
        stats = drive(wrk_pin, f"{base}/", args.duration, args.connections, env, HERE / "read.lua")
        results.append(Result(jobs, "ceiling", "read", False, *stats))
        print(f"   ceiling read {stats}", file=sys.stderr)
    return results


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


def follow_next(url: str, times: int) -> str:
    """The URL of the page `times` next-links after url."""
    with httpx.Client(timeout=30) as http:
        for _ in range(times):
            links = http.get(url).raise_for_status().json()["link"]
            url = next(link["url"] for link in links if link["relation"] == "next")
    return url


class running:
    """A server process for the duration of a with-block; stopped (by its pid) at exit."""

    def __init__(self, command: list[str], env: dict[str, str], probe: str, timeout: float):
        self.command, self.env, self.probe, self.timeout = command, env, probe, timeout
        self.log = open(HERE / "server.log", "ab")  # noqa: SIM115

    def __enter__(self) -> subprocess.Popen[bytes]:
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log
        )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited; see {HERE / 'server.log'}")
            try:
                if httpx.get(self.probe, timeout=1).status_code == 200:
                    return self.process
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
    auth: bool = False,
) -> tuple[float, float, float, int]:
    """Run wrk; (requests/s, p50 ms, p99 ms, non-2xx/3xx + socket errors)."""
    command = [*pin, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["--timeout", "5s"]
    if lua is not None:
        command += ["-s", str(lua)]
    if auth:
        command += ["-H", TOKEN_HEADER]
    output = subprocess.run(
        [*command, url], env=env, capture_output=True, text=True, check=True
    ).stdout
    return parse_wrk(output)


def parse_wrk(output: str) -> tuple[float, float, float, int]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.M))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket:
        errors += sum(int(n) for n in socket.groups())
    return rps, _ms(percentiles["50"]), _ms(percentiles["99"]), errors


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return round(float(number) * _UNITS[unit], 3)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def markdown(results: list[Result], args: argparse.Namespace) -> str:
    ceiling = {r.jobs: r.rps for r in results if r.target == "ceiling"}
    lines = [
        f"wrk: 1 thread, {args.connections} connections, {args.duration} s per row; server and"
        " ceiling on CPU 0, wrk on CPU 1. `% ceiling` = requests/s against the ceiling app's"
        " read at the same size. Page size for page 1 / page 500 is min(20, jobs / 500).",
        "",
        "| jobs | target | scenario | bearer token | requests/s | % ceiling | p50 ms | p99 ms"
        " | errors |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        share = f"{100 * r.rps / ceiling[r.jobs]:.0f} %" if ceiling.get(r.jobs) else ""
        lines.append(
            f"| {r.jobs:,} | {r.target} | {r.scenario} | {'yes' if r.auth else 'no'} |"
            f" {r.rps:,.0f} | {share} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |"
        )
    lines += ["", *summary(results)]
    return "\n".join(lines)


def summary(results: list[Result]) -> list[str]:
    """The issue's targets, computed from this run."""

    def get(jobs: int, scenario: str, auth: bool = False) -> Result | None:
        return next(
            (
                r
                for r in results
                if (r.jobs, r.scenario, r.auth, r.target) == (jobs, scenario, auth, "server")
            ),
            None,
        )

    sizes = sorted({r.jobs for r in results})
    lines = ["Targets:", ""]
    for jobs in sizes:
        ceiling = next(r.rps for r in results if r.jobs == jobs and r.target == "ceiling")
        for auth in (False, True):
            tag = f"{jobs:,} jobs{' + token' if auth else ''}"
            read, search = get(jobs, "read", auth), get(jobs, "search", auth)
            first, deep = get(jobs, "page 1", auth), get(jobs, "page 500", auth)
            if read and search and first and deep:
                lines.append(
                    f"- {tag}: read {ratio(read.rps, ceiling, 100)} % of ceiling (target ≥ 50 %),"
                    f" search {ratio(search.rps, ceiling, 100)} % (≥ 20 %),"
                    f" page 500 / page 1 throughput {ratio(deep.rps, first.rps)} (0.7–1.3)"
                )
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        for scenario in ("read", "search"):
            a, b = get(small, scenario), get(large, scenario)
            if a and b:
                lines.append(
                    f"- p99 {scenario}: {large:,} jobs / {small:,} jobs ="
                    f" {ratio(b.p99_ms, a.p99_ms)} (target ≤ 1.3)"
                )
    return lines


def ratio(a: float, b: float, scale: float = 1) -> str:
    """a / b for the summary ("n/a" when a run produced nothing to divide by)."""
    if not b:
        return "n/a"
    return f"{scale * a / b:.0f}" if scale != 1 else f"{a / b:.2f}"


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
