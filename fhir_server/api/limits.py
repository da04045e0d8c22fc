"""Hostile-input limits: body size, JSON nesting depth, and the size of a search (parameters,
values per parameter, value length)."""

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.requests import Request

from ..resources.outcome import FhirError
from .http_status import ProtocolError

_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


@dataclass(frozen=True)
class InputLimits:
    max_body_bytes: int = 1024 * 1024
    max_json_depth: int = 64
    max_search_parameters: int = 50
    max_search_values: int = 100
    max_search_value_length: int = 2048


def body_too_large(limit: int) -> FhirError:
    return ProtocolError(413, "too-costly", f"The request body is larger than {limit} bytes")


def json_depth(value: Any) -> int:
    """How deeply objects and arrays nest (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def input_limits(request: Request) -> InputLimits:
    limits: InputLimits = request.app.state.input_limits
    return limits


def check_json_depth(request: Request, body: Any) -> None:
    limit = input_limits(request).max_json_depth
    if json_depth(body) > limit:
        raise FhirError.of("structure", f"The JSON body nests deeper than {limit} levels")


def check_search_size(limits: InputLimits, params: list[tuple[str, str]]) -> None:
    """400 for a search with too many parameters, values or too long a value."""
    if len(params) > limits.max_search_parameters:
        raise FhirError.of(
            "too-costly",
            f"The search has {len(params)} parameters; at most "
            f"{limits.max_search_parameters} are accepted",
        )
    values: dict[str, int] = {}
    for name, value in params:
        if (
            len(name) > limits.max_search_value_length
            or len(value) > limits.max_search_value_length
        ):
            raise FhirError.of(
                "too-costly",
                f"Search parameter '{name[:80]}' is longer than "
                f"{limits.max_search_value_length} characters",
                name[:80],
            )
        values[name] = values.get(name, 0) + len(_UNESCAPED_COMMA.split(value))
        if values[name] > limits.max_search_values:
            raise FhirError.of(
                "too-costly",
                f"Search parameter '{name[:80]}' has more than {limits.max_search_values} values",
                name[:80],
            )


def check_query_encoding(raw: bytes, where: str) -> None:
    """400 when percent-decoding a query string (or form body) does not give UTF-8: the
    parsers would silently turn those bytes into U+FFFD and search for something else."""
    try:
        unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FhirError.of(
            "structure", f"The {where} is not valid UTF-8 (byte {exc.start} once decoded)"
        ) from None
