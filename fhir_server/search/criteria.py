"""A Subscription's criteria (`AsyncJob?status=completed&type=bulk-export`): a search of the
subscribed type, parsed by the same parser as a search request into the JobQuery whose
matches are notified (search/matcher.py)."""

from urllib.parse import parse_qsl

from ..resources.kinds import ResourceKind
from ..resources.outcome import FhirError, Issue
from .paging import SearchLimits
from .parse import HTTP_PARAMETERS, RESULT_PARAMETERS, parse_search
from .query import JobQuery

EXPRESSION = "Subscription.criteria"


def parse_criteria(criteria: str, kinds: dict[str, ResourceKind]) -> tuple[ResourceKind, JobQuery]:
    """The subscribed kind and its query; FhirError (400) naming what is wrong.

    Paging, sorting and what shapes a result (`_count`, `_sort`, `_elements`, ...) mean
    nothing for a single changed resource: refused, not ignored. So is an unknown parameter
    (a search would ignore it and match more than the subscriber asked for)."""
    type_name, _, query_string = criteria.partition("?")
    kind = kinds.get(type_name)
    if kind is None:
        known = ", ".join(kinds)
        raise FhirError.of(
            "not-supported",
            f"Subscription criteria must search one of {known}, not {type_name!r}",
            EXPRESSION,
        )
    params = parse_qsl(query_string, keep_blank_values=True)
    refused = sorted(
        {
            name
            for name, _ in params
            if name.partition(":")[0] in RESULT_PARAMETERS | HTTP_PARAMETERS
        }
    )
    if refused:
        raise FhirError(
            [
                Issue(
                    "invalid",
                    f"Subscription criteria cannot use {', '.join(refused)}: a notification "
                    "is about one resource, so paging, sorting and result shaping do not apply",
                    expression=EXPRESSION,
                )
            ]
        )
    try:
        request = parse_search(
            params, kind=kind, limits=SearchLimits(max_page_bytes=None), secret=b"", strict=True
        )
    except FhirError as error:
        raise FhirError(
            [
                Issue(i.code, f"Subscription criteria: {i.diagnostics}", expression=EXPRESSION)
                for i in error.issues
            ]
        ) from None
    return kind, request.query
