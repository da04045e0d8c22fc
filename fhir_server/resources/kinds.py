"""Resource kinds: what the server knows of each resource type it serves.

A kind names its type, validates its JSON, lists its search parameters and says which SMART
permission each interaction needs. The routes, the CapabilityStatement, the OpenAPI document,
the access policy and the storage layout are all derived from the registered kinds
(resources/registry.py), so serving a new type is one module and one registry entry.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

ParamType = Literal["token", "date"]
# FHIR's own definitions of the parameters every resource has (_id, _lastUpdated).
COMMON_PARAMETER_BASE = "http://hl7.org/fhir/SearchParameter/Resource"
# Canonical URLs of the definitions this server serves itself start with the FHIR base URL,
# filled in when they are served (resources/conformance.py): so they resolve to this server.
BASE = "[base]"
# FHIR's logical id: the same rule for every resource type.
ID_PATTERN = re.compile(r"[A-Za-z0-9\-\.]{1,64}")

# The SMART v2 permission letter each FHIR interaction needs (c r u d s): a type's history
# is a search of its versions (SMART: `s` covers search-type and history-type).
STANDARD_ACCESS: Mapping[str, str] = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "search-type": "s",
    "history-type": "s",
    "create": "c",
    "update": "u",
    "delete": "d",
}


@dataclass(frozen=True, slots=True)
class SearchParameter:
    name: str
    type: ParamType
    expression: str
    description: str
    # Field that holds the indexed value in every store.
    column: str
    # JSON path of the value inside the resource, as keys.
    path: tuple[str, ...]
    # Code system implied for a `code` element, so `system|code` can be matched.
    system: str | None = None

    @property
    def common(self) -> bool:
        """FHIR defines it for every resource (_id, _lastUpdated): no definition of our own."""
        return self.name.startswith("_")

    @property
    def definition_id(self) -> str:
        resource_type = self.expression.split(".")[0]
        return f"{resource_type}-{self.name}"

    @property
    def definition(self) -> str:
        """Canonical URL of its SearchParameter: FHIR's for a common one, else ours."""
        if self.common:
            return f"{COMMON_PARAMETER_BASE}-{self.name[1:]}"
        return f"{BASE}/SearchParameter/{self.definition_id}"


@dataclass(frozen=True, slots=True)
class Operation:
    """A type- or instance-level operation ($name) and the permission it needs."""

    name: str
    permission: str
    description: str
    # What it answers (its `return` parameter).
    returns: str = "OperationOutcome"
    # The HTTP methods it is invoked with (GET only for one that changes nothing).
    methods: tuple[str, ...] = ("POST",)
    # Its out parameters, (name, FHIR type), when it answers a Parameters of several.
    outputs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ResourceKind:
    type: str
    description: str
    # Canonical URL of the StructureDefinition the resources conform to ([base]/... when the
    # kind brings it among its definitions).
    profile: str
    # FHIR JSON in, canonical JSON out; FhirError (issue type invalid, ...) when invalid.
    validate: Callable[[Any], dict[str, Any]]
    search_parameters: tuple[SearchParameter, ...]
    # Sort without _sort: (column, descending) pairs.
    default_sort: tuple[tuple[str, bool], ...]
    # Elements a client always gets back, whatever _elements or _summary asks for.
    mandatory_elements: tuple[str, ...]
    # Elements flagged isSummary in the type's definition.
    summary_elements: tuple[str, ...]
    operations: tuple[Operation, ...] = ()
    # The interactions served, with the SMART permission letter each needs.
    access: Mapping[str, str] = field(default_factory=lambda: dict(STANDARD_ACCESS))
    # Conformance resources of its own (StructureDefinition, CodeSystem, ValueSet), served
    # read-only; canonical URLs under [base].
    definitions: tuple[dict[str, Any], ...] = ()

    def operation_definition(self, operation: Operation) -> str:
        """Canonical URL of an operation's OperationDefinition (served by this server)."""
        return f"{BASE}/OperationDefinition/{self.type}-{operation.name}"

    @property
    def storage_name(self) -> str:
        """The prefix of this type's tables or collections."""
        return self.type.lower()

    @property
    def interactions(self) -> tuple[str, ...]:
        return tuple(self.access)

    @cached_property
    def parameters_by_name(self) -> dict[str, SearchParameter]:
        return {p.name: p for p in self.search_parameters}

    @cached_property
    def parameters_by_column(self) -> dict[str, SearchParameter]:
        return {p.column: p for p in self.search_parameters}

    @cached_property
    def token_columns(self) -> tuple[str, ...]:
        """Columns a search can filter on with an equality: they lead the compound indexes."""
        return tuple(
            p.column for p in self.search_parameters if p.type == "token" and p.name != "_id"
        )

    @cached_property
    def sort_columns(self) -> tuple[str, ...]:
        """Every parameter is sortable; `id` is the unique tie-breaker at the end of a sort."""
        return tuple(p.column for p in self.search_parameters)
