"""The job console in a real browser (Debian's chromium, headless) against a real server
process, with real tokens: what a user sees and does, and what must never happen (a job's
content run as code, the token leaving the tab)."""

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from .browser import chromium
from .conftest import make_job, token
from .servers import clean_env, free_port, running_server, wait_until_ready

ADMIN = token()


def failure(text: str) -> dict[str, Any]:
    """The output of a failed job: its OperationOutcome."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception", "details": {"text": text}}],
    }
    return {"resourceType": "Parameters", "parameter": [{"name": "outcome", "resource": outcome}]}


FHIR_JSON = {"Content-Type": "application/fhir+json"}


class Server:
    """A running fhir-server and an API client for the tests' own requests."""

    def __init__(self, base: str, log: Path) -> None:
        self.base = base
        self.root = base.removesuffix("/fhir/R4")
        self.log = log

    def api(self, bearer: str = ADMIN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {bearer}", **FHIR_JSON}
        return httpx.Client(base_url=self.base + "/", headers=headers, timeout=10)

    def create(self, bearer: str = ADMIN, **fields: Any) -> dict[str, Any]:
        with self.api(bearer) as http:
            job = make_job(**fields)
            response = http.put(f"AsyncJob/{job['id']}", json=job)
            assert response.status_code == 201, response.text
            return dict(response.json())

    def update(self, job: dict[str, Any], **fields: Any) -> dict[str, Any]:
        with self.api() as http:
            current = http.get(f"AsyncJob/{job['id']}").json()
            response = http.put(f"AsyncJob/{job['id']}", json={**current, **fields})
            assert response.status_code == 200, response.text
            return dict(response.json())

    def count(self, bearer: str = ADMIN, **params: str) -> int:
        with self.api(bearer) as http:
            return int(http.get("AsyncJob", params={**params, "_summary": "count"}).json()["total"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    data = tmp_path / "data"
    with running_server(data) as base:
        port = base.split(":")[2].split("/")[0]
        yield Server(base, tmp_path / f"server-{port}.log")


@pytest.fixture
def open_console(browser: Browser, server: Server) -> Iterator[Any]:
    """open_console(token, view="#/…", viewport=…): a fresh browser context (no storage, no
    cookies) signed in through the console link; fails the test on any script error."""
    contexts = []
    errors: list[str] = []

    def open_(bearer: str | None = ADMIN, view: str = "", **options: Any) -> Page:
        context = browser.new_context(
            viewport=options.pop("viewport", {"width": 1280, "height": 800})
        )
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        # the page itself must work under its policy: nothing of its own is ever blocked
        page.on(
            "console",
            lambda message: (
                errors.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
        fragment = f"#token={bearer}" if bearer else ""
        page.goto(f"{server.root}/console{fragment}")
        if view:
            page.evaluate("view => { window.location.hash = view }", view)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert errors == []


def test_sign_in_with_a_pasted_token_and_sign_out(open_console: Any):
    page = open_console(None)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Bearer token").fill(f"Bearer {ADMIN}")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#signed-in-as")).to_have_text("Signed in as admin")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert page.evaluate("Object.values(sessionStorage)") == [ADMIN]
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_console_link_signs_in_and_the_token_stays_in_the_tab(open_console: Any, server: Server):
    page = open_console(ADMIN)
    expect(page.locator("#signed-in-as")).to_have_text("Signed in as admin")
    expect(page.locator(".count[data-status=all] .number")).to_have_text("0")
    # Gone from the address bar and the history entry; never in a cookie or the server's log.
    assert page.url == f"{server.root}/console#/"
    assert ADMIN not in page.evaluate("window.location.href + JSON.stringify(history.state)")
    assert page.context.cookies() == []
    assert page.evaluate("document.cookie") == ""
    assert (
        ADMIN not in server.log.read_text()
    )  # (the access log, whole once the server stops: below)


def test_serve_prints_a_console_link_that_signs_the_local_admin_in(
    browser: Browser, tmp_path: Path
):
    """`fhir-server serve` without configured keys (as `make run`): its log names the link."""
    port = free_port()
    command = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port)]
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        serve = subprocess.Popen(
            [*command, "--data-dir", str(tmp_path / "data")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", serve)
        found = re.search(r"Console: (\S+)", log.read_text())
        assert found, log.read_text()
        link = found[1]
        assert link.startswith(f"http://127.0.0.1:{port}/console#token=ey")
        context = browser.new_context()
        page = context.new_page()
        page.goto(link)
        expect(page.locator("#signed-in-as")).to_have_text("Signed in as admin")
        expect(page.locator(".count[data-status=all] .number")).to_have_text("0")
        assert page.url == f"http://127.0.0.1:{port}/console#/"
        context.close()
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=15)
    # the access log has the page's requests, never the token of the fragment
    text = log.read_text()
    token_value = link.split("#token=")[1]
    after_start = text.split("Console: ", 1)[1].split("\n", 1)[1]  # past the startup lines
    assert '"path":"/console"' in after_start
    assert token_value not in after_start


def test_the_page_may_connect_only_to_its_server(browser: Browser, server: Server):
    context = browser.new_context()  # not open_console's: this test provokes violations
    page = context.new_page()
    page.goto(f"{server.root}/console#token={ADMIN}")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    blocked = page.evaluate(
        """root => new Promise(done => {
            const blocked = [];
            document.addEventListener('securitypolicyviolation', e => blocked.push(e.blockedURI));
            new WebSocket(root.replace('http', 'ws') + '/ws/subscriptions-r4').onerror = () => {};
            new WebSocket('ws://example.org/steal').onerror = () => {};
            fetch('https://example.org/steal').catch(() => {});
            setTimeout(() => done(blocked), 1000);
        })""",
        server.root,
    )
    context.close()
    assert sorted(blocked) == ["https://example.org/steal", "ws://example.org/steal"]


def test_root_sends_the_browser_to_the_console(open_console: Any, server: Server):
    page = open_console(None)
    page.goto(server.root + "/")
    assert page.url.startswith(f"{server.root}/console")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_overview_counts_equal_the_apis(open_console: Any, server: Server):
    for status, n in (("accepted", 3), ("completed", 2), ("error", 1)):
        for _ in range(n):
            job = server.create()
            if status == "error":
                server.update(job, status=status, output=failure("disk full"))
            elif status != "accepted":
                server.update(job, status=status)
    page = open_console(ADMIN)
    for status in ("all", "accepted", "completed", "error", "cancelled"):
        expected = server.count(**({} if status == "all" else {"status": status}))
        expect(page.locator(f".count[data-status={status}] .number")).to_have_text(str(expected))
    # live: a new job counts without a reload
    server.create()
    expect(page.locator(".count[data-status=accepted] .number")).to_have_text("4", timeout=2000)
    # the hour's chart and the durations saw the jobs completed now
    expect(page.locator("#activity .legend")).to_contain_text("completed: 2")
    expect(page.locator("#durations table")).to_be_visible()
    expect(page.locator("#failures li")).to_have_count(1)
    expect(page.locator("#failures li")).to_contain_text("disk full")


def test_filter_and_page_through_100_jobs(open_console: Any, server: Server):
    completed = set()
    with server.api() as http:
        for i in range(100):
            job = make_job(type="bulk-export" if i % 2 else "reindex")
            assert http.put(f"AsyncJob/{job['id']}", json=job).status_code == 201
            if i % 3:
                job["status"] = "completed"
                assert http.put(f"AsyncJob/{job['id']}", json=job).status_code == 200
                if i % 2:
                    completed.add(job["id"])
    page = open_console(ADMIN, "#/jobs")
    expect(page.locator("#list-summary")).to_contain_text("100 jobs match")
    page.get_by_label("Status").select_option("completed")
    page.get_by_label("Type").select_option("bulk-export")
    page.get_by_label("Per page").select_option("10")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#list-summary")).to_contain_text(f"{len(completed)} jobs match")
    assert "status=completed" in page.url and "type=bulk-export" in page.url
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        rows = page.locator("#jobs-table tbody tr")
        expect(rows.first).to_be_visible()
        assert set(
            page.locator("#jobs-table tbody tr").evaluate_all(
                "rows => rows.map(r => r.dataset.status)"
            )
        ) == {"completed"}
        seen += rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
        next_page = page.get_by_role("link", name="Next page")
        if next_page.count() == 0:
            break
        summary_before = page.url
        next_page.click()
        expect(page).not_to_have_url(summary_before)
        expect(page.locator("#jobs-table tbody tr").first).not_to_have_attribute(
            "data-id", seen[-10]
        )
    assert sorted(seen) == sorted(completed) and pages == 4  # 33 jobs, 10 a page
    # the address is the view: back returns to the previous page, a reload keeps it
    page.go_back()
    expect(page.locator("#jobs-table tbody tr").first).to_have_attribute("data-id", seen[20])
    page.reload()
    expect(page.locator("#jobs-table tbody tr").first).to_have_attribute("data-id", seen[20])
    expect(page.get_by_label("Status")).to_have_value("completed")


def test_filter_by_request_time_and_sort(open_console: Any, server: Server):
    days = ["2026-01-01", "2026-02-01", "2026-03-01", "2026-04-01"]
    ids = {day: server.create(requestTime=f"{day}T12:00:00.000Z")["id"] for day in days}
    page = open_console(ADMIN, "#/jobs")
    expect(page.locator("#list-summary")).to_contain_text("4 jobs match")
    page.get_by_label("Requested from").fill("2026-01-15T00:00:00")
    page.get_by_label("Requested until").fill("2026-03-15T00:00:00")
    page.get_by_label("Sort by").select_option("request-time")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#list-summary")).to_contain_text("2 jobs match")
    rows = page.locator("#jobs-table tbody tr")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.id)") == [ids[days[1]], ids[days[2]]]
    page.get_by_label("Sort by").select_option("-request-time")
    page.get_by_role("button", name="Apply").click()
    expect(rows.first).to_have_attribute("data-id", ids[days[2]])
    assert "request-time=ge2026-01-1" in page.url.replace("%3A", ":")
    page.go_back()  # the previous sort
    expect(rows.first).to_have_attribute("data-id", ids[days[1]])
    expect(page.get_by_label("Requested from")).to_have_value(
        re.compile(r"^2026-01-15T00:00(:00)?$")
    )


def test_a_job_completed_through_the_api_updates_the_open_page(open_console: Any, server: Server):
    progress = {
        "resourceType": "Parameters",
        "parameter": [{"name": "progress", "valueString": "1 of 4"}],
    }
    job = server.create(output=progress)
    page = open_console(ADMIN, "#/jobs")
    row = page.locator(f"#jobs-table tr[data-id='{job['id']}']")
    expect(row.locator("progress")).to_have_attribute("value", "25")
    progress["parameter"][0]["valueString"] = "3 of 4"
    server.update(job, output=progress)
    expect(row.locator("progress")).to_have_attribute("value", "75", timeout=2000)
    started = time.monotonic()
    server.update(job, status="completed")
    expect(row).to_have_attribute("data-status", "completed", timeout=2000)
    assert time.monotonic() - started < 2
    expect(row.locator(".badge")).to_have_text("completed")


def test_cancel_from_the_detail_page(open_console: Any, server: Server):
    job = server.create(type="reindex")
    # the same owner's jobs, with a token that may only read them
    theirs = server.create(token("viewer", "system/AsyncJob.cruds"))
    reader = token("viewer", "system/AsyncJob.rs")
    read_only = open_console(reader, f"#/job/{theirs['id']}")
    expect(read_only.locator("#job-elements .badge")).to_have_text("accepted")
    expect(read_only.get_by_role("button", name="Cancel job")).to_be_disabled()
    expect(read_only.get_by_role("button", name="Delete job")).to_have_count(0)

    page = open_console(ADMIN, f"#/job/{job['id']}")
    expect(page.locator("#job-elements")).to_contain_text("reindex")
    page.get_by_role("button", name="Cancel job").click()
    page.get_by_role("button", name="Keep it").click()  # the confirmation can say no
    with server.api() as http:
        assert http.get(f"AsyncJob/{job['id']}").json()["status"] == "accepted"
    page.get_by_role("button", name="Cancel job").click()
    page.get_by_role("button", name="Cancel the job").click()
    expect(page.locator("#job-elements .badge")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel job")).to_be_disabled()
    with server.api() as http:
        assert http.get(f"AsyncJob/{job['id']}").json()["status"] == "cancelled"
    expect(page.locator("#job-history li.event")).to_have_count(2)
    expect(page.locator("#job-history")).to_contain_text("status: accepted → cancelled")
    # and what pollers see: the status endpoint's 404, eHealth's failed job
    expect(page.locator(".poll").first).to_contain_text("→ 404")
    expect(page.locator(".poll").nth(1)).to_contain_text("Job was cancelled")


def test_an_admin_deletes_a_job(open_console: Any, server: Server):
    job = server.create()
    page = open_console(ADMIN, f"#/job/{job['id']}")
    page.get_by_role("button", name="Delete job").click()
    page.get_by_role("button", name="Delete the job").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    with server.api() as http:
        assert http.get(f"AsyncJob/{job['id']}").status_code == 410


def test_an_owner_sees_only_their_jobs(open_console: Any, server: Server):
    alice = token("alice", "system/AsyncJob.cruds")
    bob = token("bob", "system/AsyncJob.cruds")
    mine = {server.create(alice)["id"] for _ in range(3)}
    theirs = server.create(bob)["id"]
    page = open_console(alice, "#/jobs")
    expect(page.locator("#list-summary")).to_contain_text("3 jobs match")
    ids = page.locator("#jobs-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert set(ids) == mine
    page.evaluate("() => { window.location.hash = '#/' }")
    expect(page.locator(".count[data-status=all] .number")).to_have_text("3")
    # live updates carry only alice's changes
    server.update({"id": theirs}, status="completed")
    server.create(alice)
    expect(page.locator(".count[data-status=all] .number")).to_have_text("4", timeout=2000)
    page.evaluate("id => { window.location.hash = '#/job/' + id }", theirs)
    expect(page.locator("#job-missing")).to_contain_text("No such job")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)


HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    "<b>bold</b><iframe srcdoc='<script>parent.__pwned=3</script>'></iframe>",
]


def test_hostile_job_content_renders_as_text(open_console: Any, server: Server):
    output = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "progress", "valueString": HOSTILE[0]},
            {"name": "<img src=x onerror=window.__pwned=4>", "valueString": HOSTILE[1]},
            {"name": "result", "valueUri": "javascript:window.__pwned=5"},
            {"name": "file", "valueUri": "https://files.example.org/a.ndjson"},
            {
                "name": "outcome",
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {"severity": "error", "code": "exception", "details": {"text": HOSTILE[2]}}
                    ],
                },
            },
        ],
    }
    job = server.create(request="javascript:window.__pwned=6", output=output)
    failed = server.create(request="https://example.org/x")
    server.update(
        failed,
        status="error",
        output={"resourceType": "Parameters", "parameter": output["parameter"][4:]},
    )
    page = open_console(ADMIN)
    expect(page.locator("#failures")).to_contain_text(HOSTILE[2])
    page.evaluate("id => { window.location.hash = '#/job/' + id }", job["id"])
    expect(page.locator("#job-output")).to_contain_text(HOSTILE[1])
    expect(page.locator("#job-output")).to_contain_text(HOSTILE[2])
    expect(page.locator("#job-elements")).to_contain_text(HOSTILE[0])
    expect(page.locator("#job-elements")).to_contain_text("javascript:window.__pwned=6")
    page.evaluate("() => { window.location.hash = '#/jobs' }")
    expect(page.locator("#jobs-table")).to_contain_text(HOSTILE[0])
    page.evaluate("id => { window.location.hash = '#/job/' + id }", job["id"])
    expect(page.locator("#job-output")).to_contain_text("javascript:window.__pwned=5")
    # Nothing ran, nothing was parsed as markup, and only the http(s) URL became a link.
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img, main iframe, main b, main script").count() == 0
    hrefs = page.locator("main a[href]").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    assert "https://files.example.org/a.ndjson" in hrefs
    assert not [href for href in hrefs if not re.match(r"^(#|https?:)", href)]


def test_an_expired_token_shows_a_banner(open_console: Any):
    expired = token(exp=int(time.time()) - 60, iat=int(time.time()) - 3600)
    page = open_console(expired)
    banner = page.get_by_role("alert")
    expect(banner).to_contain_text("Your token was refused: The access token expired")
    page.get_by_role("button", name="Sign in again").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0  # the refused token is forgotten
    page.get_by_label("Bearer token").fill(ADMIN)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator(".count[data-status=all] .number")).to_have_text("0")
    expect(page.get_by_role("alert")).to_be_hidden()


def test_an_unreachable_server_shows_a_banner_not_a_blank_page(browser: Browser, tmp_path: Path):
    data = tmp_path / "data"
    with running_server(data) as base:
        context = browser.new_context()
        page = context.new_page()
        page.goto(base.removesuffix("/fhir/R4") + f"/console#token={ADMIN}")
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    # the server stopped: the next poll fails
    expect(page.get_by_role("alert")).to_contain_text("The server is unreachable", timeout=5000)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()  # not a blank page
    context.close()


@pytest.mark.parametrize(
    "viewport", [{"width": 1280, "height": 800}, {"width": 390, "height": 844}]
)
def test_readable_on_a_laptop_and_a_phone(
    open_console: Any, server: Server, viewport: dict[str, int]
):
    job = server.create(
        type="bulk-export",
        output={
            "resourceType": "Parameters",
            "parameter": [{"name": "progress", "valueString": "42%"}],
        },
    )
    page = open_console(ADMIN, viewport=viewport)
    for view in ("#/", "#/jobs", f"#/job/{job['id']}"):
        page.evaluate("view => { window.location.hash = view }", view)
        expect(page.locator("main h1")).to_be_visible()
        page.wait_for_load_state("networkidle")
        # nothing wider than the window but the job table, which scrolls in its own box
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), view
    # every control has a name a screen reader reads
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('button, input, select, textarea, a[href]')]
          .filter(c => !(c.labels?.length || c.getAttribute('aria-label') || c.textContent.trim()))
          .map(c => c.outerHTML)"""
    )
    assert unnamed == []


def test_keyboard_only(open_console: Any, server: Server):
    server.create()
    page = open_console(ADMIN)
    expect(page.get_by_role("heading", name="Overview")).to_be_focused()
    # back from the focused heading: the header's controls, then the skip link
    for name in ("Sign out", "Jobs", "Overview", "Skip to content"):
        page.keyboard.press("Shift+Tab")
        expect(
            page.get_by_role("button" if name == "Sign out" else "link", name=name, exact=True)
        ).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    page.keyboard.press("Shift+Tab")  # from the main area: Sign out, then Jobs
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("link", name="Jobs", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Jobs")).to_be_focused()
    page.get_by_label("Status").focus()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Type")).to_be_focused()
    page.get_by_role("button", name="Apply").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(1)
    page.locator("#jobs-table tbody a").first.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Cancel job")).to_be_enabled()
    page.get_by_role("button", name="Cancel job").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Keep it")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("dialog")).to_have_count(0)
