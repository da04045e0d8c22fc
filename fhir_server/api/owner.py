"""Who makes a request: the one place the authenticated subject plugs into the job API."""

from starlette.requests import Request


def request_owner(request: Request) -> str | None:
    """The owner recorded on jobs this request creates; None until authentication lands."""
    return None
