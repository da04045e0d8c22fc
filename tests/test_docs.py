"""The docs stay true: the configuration table matches the settings, the benchmark README
shows the latest results, and no doc has a broken link or a leftover merge conflict.
(The README's own checks are in test_readme.py, the eHealth transcripts are replayed in
test_ehealth_examples.py.)"""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from fhir_server.cli import ENV_ONLY
from fhir_server.config import Settings
from fhir_server.durations import Duration

ROOT = Path(__file__).parent.parent
DOCS = sorted(
    [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").rglob("*.md")]
)
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
# Linked before they are written; remove an entry when its file lands.
PENDING_DOCS: set[Path] = set()
LINK = re.compile(r"\]\(([^)\s]+)\)")


def doc_id(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


def anchors(doc: Path) -> set[str]:
    """The GitHub anchors of a Markdown file's headings."""
    headings = re.findall(r"^#+ (.+)$", doc.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_doc_has_no_merge_conflict_markers(doc: Path):
    assert not re.search(r"^(<<<<<<<|=======|>>>>>>>)", doc.read_text(), re.MULTILINE)


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_relative_links_of_doc_resolve(doc: Path):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # an external URL
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        if linked in PENDING_DOCS:
            continue
        if not linked.exists() or (anchor and anchor not in anchors(linked)):
            broken.append(target)
    assert broken == []


def configuration_rows() -> dict[str, tuple[str, str]]:
    """variable -> (option, default) from the settings table of docs/configuration.md."""
    rows = {}
    for line in CONFIGURATION.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`FHIR_SERVER_"):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def test_configuration_table_lists_every_setting_once():
    expected = {f"FHIR_SERVER_{name.upper()}" for name in Settings.model_fields}
    listed = [
        line.split("|")[1].strip().strip("`")
        for line in CONFIGURATION.splitlines()
        if line.startswith("| `FHIR_SERVER_")
    ]
    assert sorted(listed) == sorted(expected)


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_configuration_table_names_the_option_and_default_of(name: str):
    option, default = configuration_rows()[f"FHIR_SERVER_{name.upper()}"]
    if name in ENV_ONLY:  # secrets: never an argument value
        assert option.startswith("none") and f"`{ENV_ONLY[name]}`" in option
    else:
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


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


def test_benchmark_readme_shows_the_rows_of_the_latest_results():
    results = table_rows((ROOT / "benchmarks" / "results.md").read_text())
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    latest = readme.split("\n## Latest results\n", 1)[1].split("\n## ", 1)[0]
    assert results != []
    assert table_rows(latest) == results


def test_benchmark_readme_shows_the_rows_of_the_before_and_after_run():
    results = table_rows((ROOT / "benchmarks" / "before-after" / "results.md").read_text())
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    section = readme.split("\n## Before and after the pipeline redesign\n", 1)[1]
    assert results != []
    assert table_rows(section.split("\n## ", 1)[0]) == results
