"""GET [base]/{type}/{id} and GET [base]/{type}?url=… for the conformance resources this server
defines (resources/conformance.py): public and read-only, as the CapabilityStatement is.
Any other method on these paths is a 405 (api/errors.py `routing_error`)."""

from starlette.requests import Request
from starlette.responses import Response

from ..resources import bundle
from ..resources.conformance import conformance_resources, with_base
from ..resources.outcome import FhirError, Issue
from .limits import check_query_encoding
from .responses import fhir_response
from .routing import Endpoint
from .urls import fhir_base, request_url

# What a definition search understands besides `url`: the media type and indentation.
FORMAT_PARAMETERS = frozenset({"_format", "_pretty"})


def read(resource_type: str) -> Endpoint:
    async def read_definition(request: Request) -> Response:
        resource_id = request.path_params["id"]
        resource = conformance_resources(request.app.state.kinds)[resource_type].get(resource_id)
        if resource is None:
            raise FhirError.of("not-found", f"{resource_type}/{resource_id[:80]} is not known")
        return fhir_response(request, with_base(resource, fhir_base(request)))

    return read_definition


def search(resource_type: str) -> Endpoint:
    async def search_definitions(request: Request) -> Response:
        check_query_encoding(request.scope["query_string"], "query string")
        base = fhir_base(request)
        urls = request.query_params.getlist("url")
        unknown = sorted(set(request.query_params) - FORMAT_PARAMETERS - {"url"})
        warnings = [
            Issue(
                "not-supported",
                f"Unknown search parameter '{name}' was ignored; {resource_type} is searched "
                "by url",
                severity="warning",
                expression=name,
            )
            for name in unknown
        ]
        if warnings and "handling=strict" in request.headers.get("prefer", "").replace(" ", ""):
            raise FhirError(
                [Issue(i.code, i.diagnostics, expression=i.expression) for i in warnings]
            )
        found = [
            (resource["id"], resource)
            for resource in (
                with_base(r, base)
                for r in conformance_resources(request.app.state.kinds)[resource_type].values()
            )
            if all(resource["url"] == url for url in urls)
        ]
        return fhir_response(
            request,
            bundle.searchset(
                base,
                resource_type,
                found,
                total=len(found),
                links=[("self", request_url(request))],
                warnings=warnings,
            ),
        )

    return search_definitions
