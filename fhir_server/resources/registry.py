"""The resource kinds this server serves: add a kind's module and list it here."""

from .asyncjob import ASYNC_JOB
from .kinds import ResourceKind

KINDS: tuple[ResourceKind, ...] = (ASYNC_JOB,)
BY_TYPE: dict[str, ResourceKind] = {kind.type: kind for kind in KINDS}
