"""The README stays a short, true front page: one Quick start, every route of the app in its
endpoint table, and a link to every topic doc. The topic docs are checked in test_docs.py."""

import re
from pathlib import Path

from fhir_server.app import create_app
from fhir_server.config import Settings

from .auth_helpers import app_routes

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
MAX_README_LINES = 200


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_quick_start_is_exactly_make_run_and_make_test():
    quick_start = section("Quick start")
    first_block = quick_start.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make run", "make test"]
    assert README.count("\n## Quick start") == 1


def test_readme_is_at_most_200_lines():
    assert len(README.splitlines()) <= MAX_README_LINES


def test_every_route_is_in_the_endpoint_table():
    endpoints = section("Endpoints")
    app = create_app(Settings(jwt_secret="x" * 40, secret_key="k"))
    missing = [
        f"{method} {route.template}"
        for route in app_routes(app)
        for method in sorted((route.methods or set()) - {"HEAD"})
        if not re.search(rf"`{method} {re.escape(route.template)}[`?]", endpoints)
    ]
    assert missing == []


def test_readme_links_every_topic_doc():
    topic_docs = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
    unlinked = [
        str(doc.relative_to(ROOT))
        for doc in topic_docs
        if f"]({doc.relative_to(ROOT)})" not in README
    ]
    assert unlinked == []
    assert "](docs/decisions/README.md)" in README
