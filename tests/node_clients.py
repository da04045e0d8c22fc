"""Node scripts in tests/node (installed by `make test`): real JavaScript clients and validators."""

import json
import subprocess
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).parent / "node"


def run_node(script: str, payload: Any, *args: str, timeout: float = 60) -> Any:
    """Runs tests/node/<script> with `payload` as JSON on stdin; returns its stdout as JSON."""
    finished = subprocess.run(
        ["node", str(NODE_DIR / script), *args],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=NODE_DIR,
        timeout=timeout,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    return json.loads(finished.stdout)


def medplum_issues(
    resources: list[dict[str, Any]], definitions: list[dict[str, Any]] | None = None
) -> list[list[dict[str, Any]]]:
    """@medplum/core validateResource over each resource: a list of issues per resource.

    `definitions` (a server's StructureDefinitions, CodeSystems, ValueSets): resources of a
    profiled type, in Bundles too, are also validated against the profile and its required
    bindings."""
    payload = {"resources": resources, "definitions": definitions or []}
    result: list[list[dict[str, Any]]] = run_node("validate.mjs", payload)
    return result
