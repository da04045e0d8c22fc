"""Who makes a request: the one place the authenticated subject plugs into the job API."""

from starlette.requests import Request


def request_owner(request: Request) -> str | None:
    """The owner recorded on jobs this request creates: `client:<client_id>` or the token's
    sub (auth/tokens.py owner_of); None with authentication off."""
    principal = request.scope.get("auth")
    return None if principal is None else principal.owner
