"""The public API: what producers and embedders import from `fhir_server`, and nothing else."""

import ast
from pathlib import Path

import fhir_server

ROOT = Path(__file__).parent.parent
PUBLIC_NAMES = [
    "STATUSES",
    "FhirError",
    "GuardedRoute",
    "Issue",
    "JobCancelled",
    "JobDeleted",
    "JobNotFound",
    "JobQuery",
    "JobRecord",
    "JobService",
    "JobStore",
    "PreconditionFailed",
    "RuleViolation",
    "Settings",
    "SmartAccess",
    "SortKey",
    "StoreUnavailable",
    "TokenMatch",
    "VersionConflict",
    "__version__",
    "create_app",
    "kick_off",
    "prefers_async",
]


def test_the_public_names_are_these():
    assert sorted(fhir_server.__all__) == sorted(PUBLIC_NAMES)


def test_every_public_name_is_importable_from_the_package():
    for name in PUBLIC_NAMES:
        assert getattr(fhir_server, name) is not None, name


def test_examples_import_only_public_names():
    for example in sorted((ROOT / "examples").glob("*.py")):
        for node in ast.walk(ast.parse(example.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fhir_server"):
                assert node.module == "fhir_server", f"{example.name} imports {node.module}"
                assert {alias.name for alias in node.names} <= set(PUBLIC_NAMES), example.name
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("fhir_server."), example.name
