"""The resource kinds this server serves: add a kind's module and list it here."""

from .asyncjob import ASYNC_JOB
from .kinds import ResourceKind
from .subscription import SUBSCRIPTION

KINDS: tuple[ResourceKind, ...] = (ASYNC_JOB, SUBSCRIPTION)
BY_TYPE: dict[str, ResourceKind] = {kind.type: kind for kind in KINDS}
