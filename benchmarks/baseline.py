"""The baseline of a before/after comparison: another commit of this repository, checked out
into a temporary git worktree for the length of the run."""

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tree:
    """A source tree whose own benchmarks.serve_seeded serves its own fhir_server."""

    path: Path
    commit: str  # full hash of HEAD
    label: str  # as given on the command line, or "working tree"
    uncommitted: bool = False


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def current_tree(root: Path) -> Tree:
    """The tree the harness runs from, with or without uncommitted changes."""
    try:
        commit = git(root, "rev-parse", "HEAD")
        uncommitted = bool(git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return Tree(root, "unknown", "working tree")
    return Tree(root, commit, "working tree", uncommitted)


@contextlib.contextmanager
def checkout(root: Path, ref: str) -> Iterator[Tree]:
    """REF checked out (detached) into a temporary worktree, removed again on exit."""
    try:
        commit = git(root, "rev-parse", "--verify", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"--baseline {ref}: not a commit of {root}: {exc.stderr.strip()}") from exc
    parent = Path(tempfile.mkdtemp(prefix="fhir-bench-baseline-"))
    path = parent / "tree"
    git(root, "worktree", "add", "--detach", str(path), commit)
    print(f"== baseline {ref} ({commit[:12]}) checked out in {path}", file=sys.stderr)
    try:
        yield Tree(path, commit, ref)
    finally:
        try:
            git(root, "worktree", "remove", "--force", str(path))
        except subprocess.CalledProcessError as exc:
            print(f"note: could not remove worktree {path}: {exc.stderr.strip()}", file=sys.stderr)
        shutil.rmtree(parent, ignore_errors=True)
