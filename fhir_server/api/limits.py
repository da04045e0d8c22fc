"""Hostile-input limits: body size and time, the shape of a JSON body (nesting depth, array
length, values in all), and the size of a search (parameters, values per parameter, value
length). The request head is bounded below the app, in api/connection.py."""

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
    max_json_array_items: int = 1000
    max_json_elements: int = 10_000
    max_search_parameters: int = 50
    max_search_values: int = 100
    max_search_value_length: int = 2048


def body_too_large(limit: int) -> FhirError:
    return ProtocolError(413, "too-costly", f"The request body is larger than {limit} bytes")


def body_too_slow(seconds: float) -> FhirError:
    error = ProtocolError(408, "timeout", f"The request body did not arrive within {seconds:g} s")
    # The rest of the body may still come: the connection cannot carry another request. (The
    # connection's own clock, api/connection.py, closes it too, but may fire after this.)
    error.headers["Connection"] = "close"
    return error


def input_limits(request: Request) -> InputLimits:
    limits: InputLimits = request.app.state.input_limits
    return limits


def check_json_shape(limits: InputLimits, body: Any, root: str) -> None:
    """400 for a JSON body that nests too deep, has too long an array or too many values in
    all: validation costs grow with each, so they are counted first, in one cheap pass that
    stops at the first limit broken. `root` names the body in element paths (its type)."""
    count = 1
    stack: list[tuple[Any, int, str]] = [(body, 1, root)]
    while stack:
        item, depth, path = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > limits.max_json_depth:
            raise FhirError.of(
                "structure", f"The JSON body nests deeper than {limits.max_json_depth} levels"
            )
        if isinstance(item, list) and len(item) > limits.max_json_array_items:
            raise FhirError.of(
                "too-costly",
                f"{path} has {len(item)} items; at most {limits.max_json_array_items} are "
                "accepted in one array",
                path,
            )
        count += len(item)
        if count > limits.max_json_elements:
            raise FhirError.of(
                "too-costly",
                f"The JSON body has more than {limits.max_json_elements} values "
                "(objects, arrays and scalars together)",
            )
        if isinstance(item, dict):
            stack.extend((value, depth + 1, f"{path}.{key}") for key, value in item.items())
        else:
            stack.extend((value, depth + 1, path) for value in item)


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
