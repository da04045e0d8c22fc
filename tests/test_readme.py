"""The README stays true: one Quick start, a configuration table that matches the settings,
every route of the app in the endpoint lists, and eHealth examples the server really answers."""

import json
import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import TypeAdapter
from starlette.routing import Route

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.durations import Duration
from fhir_server.jobs.loader import load_paths
from fhir_server.storage.base import JobStore

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
EXAMPLES = ROOT / "examples" / "jobs"
HOST = "http://testserver"


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def configuration_rows() -> dict[str, tuple[str, str]]:
    """variable -> (option, default) from the Configuration table."""
    rows = {}
    for line in section("Configuration").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`FHIR_SERVER_"):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def test_readme_has_no_merge_conflict_markers():
    assert not re.search(r"^(<<<<<<<|=======|>>>>>>>)", README, re.MULTILINE)


def test_quick_start_is_exactly_make_run_and_make_test():
    quick_start = section("Quick start")
    first_block = quick_start.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make run", "make test"]
    assert README.count("\n## Quick start") == 1


def test_configuration_table_lists_every_setting_once():
    expected = {f"FHIR_SERVER_{name.upper()}" for name in Settings.model_fields}
    listed = [
        line.split("|")[1].strip().strip("`")
        for line in section("Configuration").splitlines()
        if line.startswith("| `FHIR_SERVER_")
    ]
    assert sorted(listed) == sorted(expected)


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_configuration_table_names_the_option_and_default_of(name: str):
    option, default = configuration_rows()[f"FHIR_SERVER_{name.upper()}"]
    assert option.startswith(f"`--{name.replace('_', '-')}")
    field = Settings.model_fields[name]
    value = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    if value is None:
        assert default.startswith("unset")
    elif value == []:
        assert default == "none"
    else:
        shown = default.split("`")[1]
        if isinstance(value, timedelta):
            assert TypeAdapter(Duration).validate_python(shown) == value
        elif isinstance(value, Path):
            assert Path(shown) == value
        elif isinstance(value, bool):
            assert shown == str(value).lower()
        else:
            assert shown == str(value)


def test_every_route_is_in_an_endpoint_list():
    app = create_app(Settings(jwt_secret="x" * 40, secret_key="k"))
    missing = [
        f"{method} {route.path}"
        for route in app.routes
        if isinstance(route, Route)
        for method in sorted((route.methods or set()) - {"HEAD"})
        if not re.search(rf"`{method} {re.escape(route.path)}[`?]", README)
    ]
    assert missing == []


EHEALTH_EXAMPLES = re.findall(
    r"```\n\$ curl -i -H 'X-Request-ID: (\S+)' http://127\.0\.0\.1:8000(\S+)\n"
    r"HTTP/1\.1 (\d+)[^\n]*\n.*?\n\n(\{.*?\n\})\n```",
    README,
    re.DOTALL,
)


def test_readme_shows_the_ehealth_examples():
    assert len(EHEALTH_EXAMPLES) >= 11


@pytest.mark.parametrize(("request_id", "path", "status", "body"), EHEALTH_EXAMPLES)
async def test_ehealth_example_in_the_readme_is_what_the_server_answers(
    client: httpx.AsyncClient, store: JobStore, request_id: str, path: str, status: str, body: str
):
    await load_paths(store, [EXAMPLES])
    response = await client.get(HOST + path, headers={"X-Request-ID": request_id})
    assert response.status_code == int(status)
    assert "location" not in response.headers
    assert response.json() == json.loads(body.replace("http://127.0.0.1:8000", HOST))
