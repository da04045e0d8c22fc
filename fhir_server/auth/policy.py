"""What an interaction on a resource kind needs, from the kind's own access rules."""

from ..resources.kinds import ResourceKind
from .scopes import SmartAccess


def interaction_access(kind: ResourceKind, interaction: str) -> SmartAccess:
    """The SMART permission an interaction (`read`, `search-type`, `$cancel`, ...) needs;
    LookupError for one the kind does not serve."""
    if interaction.startswith("$"):
        for operation in kind.operations:
            if operation.name == interaction[1:]:
                return SmartAccess(kind.type, operation.permission)
        raise LookupError(f"{kind.type} has no operation {interaction}")
    if interaction not in kind.access:
        raise LookupError(f"{kind.type} does not serve the interaction {interaction}")
    return SmartAccess(kind.type, kind.access[interaction])
