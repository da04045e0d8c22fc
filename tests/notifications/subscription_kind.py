"""A Subscription kind for the delivery tests: stored as the server stores it, not validated."""

from typing import Any

from fhir_server.resources.kinds import ResourceKind, SearchParameter


def _as_is(data: Any) -> dict[str, Any]:
    return dict(data)


SUBSCRIPTION = ResourceKind(
    type="Subscription",
    description="Subscriptions (for the tests)",
    profile="http://hl7.org/fhir/StructureDefinition/Subscription",
    validate=_as_is,
    search_parameters=(
        SearchParameter("_id", "token", "Subscription.id", "Logical id", "id", ("id",)),
        SearchParameter(
            "_lastUpdated",
            "date",
            "Subscription.meta.lastUpdated",
            "When it last changed",
            "last_updated",
            ("meta", "lastUpdated"),
        ),
    ),
    default_sort=(("last_updated", True),),
    mandatory_elements=("resourceType", "id", "meta"),
    summary_elements=("resourceType", "id", "meta"),
)
