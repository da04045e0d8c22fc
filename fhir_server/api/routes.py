"""Every route of the app: the FHIR interactions of each registered resource kind, the async
status endpoint, the public endpoints, /metrics (the admin scope), the eHealth adapter and the
token endpoint; each with the access it needs (api/routing.py)."""

from collections.abc import Callable, Mapping
from functools import partial

from starlette.routing import BaseRoute, WebSocketRoute

from ..auth.policy import interaction_access
from ..auth.scopes import AnyToken, NamedScope
from ..jobs.service import JobService
from ..notifications.websocket import PATH as WS_PATH
from ..resources.asyncjob import ASYNC_JOB
from ..resources.conformance import CONFORMANCE_TYPES
from ..resources.kinds import ResourceKind
from ..resources.subscription import SUBSCRIPTION, WS_BINDING_TOKEN
from ..storage.writer import ResourceWriter
from . import (
    bundles,
    cancel,
    conformance,
    console,
    ehealth,
    health,
    history,
    metadata,
    oauth,
    openapi,
    read,
    search,
    status,
    subscriptions,
    writes,
)
from .routing import READ_ID, Endpoint, GuardedRoute, public
from .urls import BASE_PATH, SMART_CONFIGURATION_PATH, STATUS_PATH

# The writes of a kind with domain rules of its own; any other kind's are ResourceWriter's
# (validated, versioned, conditional).
WRITERS: dict[str, writes.WriterFactory] = {ASYNC_JOB.type: JobService}
# Operations a kind declares, by (type, name): the handler that runs them.
OPERATIONS: dict[tuple[str, str], Endpoint] = {
    (ASYNC_JOB.type, "cancel"): cancel.cancel,
    (SUBSCRIPTION.type, WS_BINDING_TOKEN): subscriptions.ws_binding_token,
}

SearchParsers = Callable[[ResourceKind], search.SearchParser]


def writer_of(kind: ResourceKind) -> writes.WriterFactory:
    """The kind's writes: its own service, else ResourceWriter's."""
    return WRITERS.get(kind.type) or partial(ResourceWriter, kind)


def kind_routes(
    kind: ResourceKind,
    parser: search.SearchParser,
    writer: writes.WriterFactory | None = None,
) -> list[GuardedRoute]:
    """The interactions and operations the kind serves, under [base]/[type]."""
    base = f"{BASE_PATH}/{kind.type}"
    writer = writer or writer_of(kind)
    table: list[tuple[str, str, str, Endpoint]] = [
        # The router tries routes in order: read and search, the busiest, lead (a read's id is
        # never `_history`: that is the type's history).
        ("read", "GET", f"/{{id:{READ_ID}}}", read.read(kind)),
        ("search-type", "GET", "", search.search(kind, parser)),
        ("search-type", "POST", "/_search", search.search(kind, parser)),
        ("history-type", "GET", "/_history", history.type_history(kind)),
        ("history-instance", "GET", "/{id}/_history", history.history(kind)),
        ("vread", "GET", "/{id}/_history/{vid}", read.vread(kind)),
        ("create", "POST", "", writes.create(kind, writer)),
        ("update", "PUT", "/{id}", writes.update(kind, writer)),
        ("delete", "DELETE", "/{id}", writes.delete(kind, writer)),
    ]
    routes = [
        GuardedRoute(
            base + path,
            endpoint,
            methods=[method],
            access=interaction_access(kind, interaction),
            template=base + path.replace(f":{READ_ID}", ""),
        )
        for interaction, method, path, endpoint in table
        if interaction in kind.access
    ]
    for operation in kind.operations:
        name = f"${operation.name}"
        routes.append(
            GuardedRoute(
                f"{base}/{{id}}/{name}",
                OPERATIONS[(kind.type, operation.name)],
                methods=list(operation.methods),
                access=interaction_access(kind, name),
            )
        )
    return routes


def conformance_routes() -> list[GuardedRoute]:
    """The definitions the CapabilityStatement names, public like it: read and search by url."""
    routes = []
    for resource_type in CONFORMANCE_TYPES:
        base = f"{BASE_PATH}/{resource_type}"
        routes += [
            public(f"{base}/{{id}}", conformance.read(resource_type)),
            public(base, conformance.search(resource_type)),
        ]
    return routes


def all_routes(
    kinds: tuple[ResourceKind, ...],
    parser_for: SearchParsers,
    admin_scope: str,
    writers: Mapping[str, writes.WriterFactory] | None = None,
) -> list[BaseRoute]:
    """The routes of the app serving `kinds` (the registry's, resources/registry.py);
    `writers` are kinds' writers built from settings (create_app)."""
    own = {**WRITERS, **(writers or {})}

    def writer_for(kind: ResourceKind) -> writes.WriterFactory:
        return own.get(kind.type) or writer_of(kind)

    routes = [
        route for kind in kinds for route in kind_routes(kind, parser_for(kind), writer_for(kind))
    ]
    # The first kind's read and search lead: the busiest routes, matched first.
    leading = 2
    return [
        *routes[:leading],
        public(f"{BASE_PATH}/metadata", metadata.metadata),
        *routes[leading:],
        # batch and transaction Bundles: each entry needs its own interaction's scope
        # (api/bundles.py), the route only an accepted token. Exact paths: nothing under the
        # base ([base]/metadata, [base]/AsyncJob) is shadowed; clients post to the base with
        # a trailing slash too (fhir-kit-client).
        *(
            GuardedRoute(
                path,
                bundles.bundle(writer_for),
                methods=["POST"],
                access=AnyToken(),
                template=BASE_PATH,
            )
            for path in (BASE_PATH, BASE_PATH + "/")
        ),
        GuardedRoute(
            STATUS_PATH,
            status.poll,
            methods=["GET"],
            access=interaction_access(ASYNC_JOB, "read"),
        ),
        # Cancelling through the status URL changes the job's status: an update.
        GuardedRoute(
            STATUS_PATH,
            status.cancel,
            methods=["DELETE"],
            access=interaction_access(ASYNC_JOB, "update"),
        ),
        public(SMART_CONFIGURATION_PATH, oauth.smart_configuration),
        *conformance_routes(),
        public("/healthz", health.healthz),
        public("/readyz", health.readyz),
        # Counts every owner's jobs: for admins only.
        GuardedRoute("/metrics", health.metrics, methods=["GET"], access=NamedScope(admin_scope)),
        public(openapi.OPENAPI_PATH, openapi.openapi_json),
        # The job console: a static page; its data comes from the API with the user's token.
        public("/", console.root),
        public(console.CONSOLE_PATH, console.page),
        public(console.ASSET_PATH, console.asset),
        # Subscriptions' notifications: the socket authenticates each bind with a binding
        # token ($get-ws-binding-token), not with a bearer token on the upgrade.
        WebSocketRoute(WS_PATH, subscriptions.websocket),
        *ehealth.mounts(),
        oauth.token_mount(),
    ]
