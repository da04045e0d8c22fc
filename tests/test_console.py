"""The job console's page and files as HTTP serves them: public, with a strict
Content-Security-Policy, shipped in the package; / sends a browser there and answers any
other client as before. What the page does in a browser is in test_console_browser.py."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fhir_server.api.console import ASSETS
from fhir_server.auth.setup import console_link
from fhir_server.config import Settings

from .conftest import MakeClient

HOST = "http://testserver"
ROOT = Path(__file__).parent.parent
ASSET_NAMES = sorted(entry.name for entry in ASSETS.iterdir() if entry.name != "index.html")


def assert_locked_down(headers) -> None:
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert "connect-src 'self'" in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


async def test_page_is_public_html_under_a_strict_policy(make_client: MakeClient):
    async with make_client(headers={}) as http:
        response = await http.get(f"{HOST}/console")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert_locked_down(response.headers)
    # No inline script or style: the policy would block them.
    assert not re.search(r"<script(?![^>]*\bsrc=)", response.text)
    assert "<style" not in response.text and "style=" not in response.text
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("name", ASSET_NAMES)
async def test_every_file_is_served_with_its_type_and_the_policy(
    make_client: MakeClient, name: str
):
    async with make_client(headers={}) as http:
        response = await http.get(f"{HOST}/console/{name}")
    assert response.status_code == 200
    expected = {"js": "text/javascript", "css": "text/css"}[name.rpartition(".")[2]]
    assert response.headers["content-type"].startswith(expected)
    assert_locked_down(response.headers)


@pytest.mark.parametrize(
    "name", ["nope.js", "..%2Fconsole.py", "%2E%2E%2F__init__.py", "console.py"]
)
async def test_only_the_console_files_are_served(make_client: MakeClient, name: str):
    async with make_client(headers={}) as http:
        response = await http.get(f"{HOST}/console/{name}")
    # a name with a slash matches no route: refused as an unknown path (401 without a token)
    assert response.status_code in (401, 404)
    assert response.json()["resourceType"] == "OperationOutcome"


def test_scripts_never_parse_data_as_html():
    """Every value reaches the page as text: no innerHTML, outerHTML, insertAdjacentHTML,
    document.write or eval in the console's scripts."""
    for name in ASSET_NAMES:
        text = (ASSETS / name).read_text()
        for sink in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert sink not in text, f"{name} uses {sink}"


async def test_root_sends_a_browser_to_the_console(make_client: MakeClient):
    async with make_client(headers={}) as http:
        response = await http.get(f"{HOST}/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert (response.status_code, response.headers["location"]) == (303, "/console")


async def test_root_answers_other_clients_as_before(make_client: MakeClient):
    async with make_client(headers={}) as http:
        anonymous = await http.get(f"{HOST}/")
    async with make_client() as http:
        with_token = await http.get(f"{HOST}/", headers={"Accept": "application/fhir+json"})
    assert anonymous.status_code == 401
    assert anonymous.json()["issue"][0]["code"] == "login"
    assert with_token.status_code == 404
    assert with_token.json()["issue"][0]["diagnostics"] == "No endpoint at /"


def test_console_link_carries_the_token_in_the_fragment():
    settings = Settings(jwt_secret="x" * 40, host="0.0.0.0", port=8123)
    assert (
        console_link(settings, "abc.def.ghi") == "http://127.0.0.1:8123/console#token=abc.def.ghi"
    )
    public = Settings(jwt_secret="x" * 40, public_base_url="https://jobs.example.org/base")
    assert console_link(public, "t") == "https://jobs.example.org/base/console#token=t"


def test_a_wheel_ships_the_console(tmp_path: Path):
    """A non-editable install has the page and its files (package data)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("fhir_server-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"fhir_server/api/console/{name}" for name in ["index.html", *ASSET_NAMES]}
    assert expected <= names
