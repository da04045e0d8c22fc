"""Who makes a request: the one place the authenticated subject plugs into the job API."""

from starlette.requests import Request


def request_owner(request: Request) -> str | None:
    """The owner recorded on jobs this request creates: the token's client_id or sub (None
    with authentication off)."""
    principal = request.scope.get("auth")
    return None if principal is None else principal.owner
