"""The resources in a file to load: one JSON resource, a Bundle's entries, or NDJSON lines
(of the whole file, or of a byte range starting at a line), each with its line number.

An NDJSON line is read up to a bound: a longer one (a file without line breaks, say) is
measured and passed over, never held in memory (LongLine).
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import orjson

SUFFIXES = (".json", ".ndjson")
CHUNK_BYTES = 1 << 20  # read at a time to count or pass over lines, never a whole line
BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark, as some tools start a file
READ_BUFFER_BYTES = 1 << 16  # an NDJSON file's reads (with the default 8 KiB: a fifth slower)
_decoder = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class LongLine:
    """In place of a resource: an NDJSON line of `size` bytes, over the bound it was read to."""

    size: int


def resources(
    path: Path, start: int = 0, end: int | None = None, *, max_line_bytes: int | None = None
) -> Iterator[tuple[int, Any]]:
    """Each resource with its line number: counted from the line at `start` (1 for it) in an
    NDJSON file's range [start, end), from the file's start in any other. An NDJSON line of
    over max_line_bytes (a line break not counted) comes as a LongLine."""
    if path.suffix == ".ndjson":
        yield from _ndjson(path, start, end, max_line_bytes)
        return
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark ignored (RFC 8259)
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from exc
    try:
        begin = len(text) - len(text.lstrip())
        document, _ = _decoder.raw_decode(text, begin)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        for offset, entry in _bundle_entries(text, begin):
            yield text.count("\n", 0, offset) + 1, entry.get("resource")
    else:
        yield text.count("\n", 0, begin) + 1, document


def line_at(path: Path, offset: int) -> int:
    """The number of the line starting at byte `offset` of path."""
    newlines = 0
    with path.open("rb") as file:
        while offset > 0:
            chunk = file.read(min(offset, CHUNK_BYTES))
            if not chunk:
                break
            newlines += chunk.count(b"\n")
            offset -= len(chunk)
    return newlines + 1


def _ndjson(
    path: Path, start: int, end: int | None, max_line_bytes: int | None
) -> Iterator[tuple[int, Any]]:
    """Each line's resource, read a line at a time (orjson: a few µs a job)."""
    bound = -1 if max_line_bytes is None else max_line_bytes + 1  # with its line break
    try:
        with path.open("rb", buffering=READ_BUFFER_BYTES) as lines:
            position = start
            if start == 0 and lines.read(len(BOM)) == BOM:  # ignored (RFC 8259)
                position = len(BOM)
            lines.seek(position)
            for number, line in enumerate(iter(partial(lines.readline, bound), b""), start=1):
                if end is not None and position >= end:
                    return
                position += len(line)
                if len(line) == bound and not line.endswith(b"\n"):
                    rest = skip_line(lines)
                    position += rest
                    yield number, LongLine(len(line) + rest)
                elif line.strip():
                    try:
                        yield number, orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        where = line_at(path, start) + number - 1
                        raise ValueError(f"{path}:{where}: not valid JSON: {exc.msg}") from exc
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from exc


def skip_line(file: IO[bytes]) -> int:
    """Read file to the start of its next line, a chunk at a time; the bytes passed over."""
    skipped = 0
    while chunk := file.readline(CHUNK_BYTES):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def _bundle_entries(text: str, start: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each Bundle.entry with the text offset where it begins (for line numbers)."""
    for key, offset in _members(text, start, "{"):
        if key == "entry":
            for _, entry_offset in _members(text, offset, "["):
                entry, _ = _decoder.raw_decode(text, entry_offset)
                yield entry_offset, entry if isinstance(entry, dict) else {}


def _members(text: str, offset: int, opener: str) -> Iterator[tuple[str | None, int]]:
    """(key or None, value offset) for the members of the object/array at offset."""
    position = _skip(text, offset)
    if text[position] != opener:
        return
    position = _skip(text, position + 1)
    closer = "}" if opener == "{" else "]"
    while text[position] != closer:
        key = None
        if opener == "{":
            key, position = _decoder.raw_decode(text, position)
            position = _skip(text, _skip(text, position) + 1)  # past the colon
        yield key, position
        _, position = _decoder.raw_decode(text, position)
        position = _skip(text, position)
        if text[position] == ",":
            position = _skip(text, position + 1)


def _skip(text: str, position: int) -> int:
    while text[position] in " \t\r\n":
        position += 1
    return position
