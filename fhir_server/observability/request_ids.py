"""Request ids: the client's plain X-Request-ID, or a new random one."""

import random
import re

from starlette.types import Scope

REQUEST_ID_HEADER = b"x-request-id"
# An incoming id is reused only if it is short and plain, so it cannot forge log lines.
_SAFE_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,200}")


def assign_request_id(scope: Scope, incoming: bytes | None = None) -> str:
    """The request's id, kept in its state (request.state.request_id) for later layers: the
    client's X-Request-ID (`incoming`) when it is plain, else a new one."""
    if incoming is not None and _SAFE_ID.fullmatch(incoming):
        request_id = incoming.decode()
    else:
        request_id = new_request_id()
    scope.setdefault("state", {})["request_id"] = request_id
    return request_id


def request_id_of(scope: Scope) -> str:
    """The id this request is known by: assigned by the pipeline, else the client's plain
    X-Request-ID, else a new one."""
    state = scope.get("state") or {}
    if "request_id" in state:
        return str(state["request_id"])
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _SAFE_ID.fullmatch(value):
                return str(value.decode())
            break
    return new_request_id()


def new_request_id() -> str:
    # Random, so it tells nothing of the traffic; far cheaper than uuid4 (no system call).
    return f"{random.getrandbits(128):032x}"
