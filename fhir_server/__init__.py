"""FHIR R4 server for AsyncJob resources, with an eHealth job-status adapter.

The names below are the public API for producers (services that run jobs) and embedders
(applications that serve the FHIR API beside their own routes); everything else may change.
Each is imported when first used (PEP 562), so a command that needs none of them (the CLI's
`load`) does not start by importing the whole server.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .api.kickoff import kick_off, prefers_async
    from .api.routing import GuardedRoute
    from .app import create_app
    from .auth.scopes import SmartAccess
    from .config import Settings
    from .jobs.rules import JobCancelled, RuleViolation
    from .jobs.service import JobDeleted, JobNotFound, JobService, PreconditionFailed
    from .resources.asyncjob import STATUSES
    from .resources.outcome import FhirError, Issue
    from .search.query import JobQuery, SortKey, TokenMatch
    from .storage.base import JobRecord, JobStore, StoreUnavailable, VersionConflict

# Each public name and the module it comes from.
_SOURCES = {
    "kick_off": ".api.kickoff",
    "prefers_async": ".api.kickoff",
    "GuardedRoute": ".api.routing",
    "create_app": ".app",
    "SmartAccess": ".auth.scopes",
    "Settings": ".config",
    "JobCancelled": ".jobs.rules",
    "RuleViolation": ".jobs.rules",
    "JobDeleted": ".jobs.service",
    "JobNotFound": ".jobs.service",
    "JobService": ".jobs.service",
    "PreconditionFailed": ".jobs.service",
    "STATUSES": ".resources.asyncjob",
    "FhirError": ".resources.outcome",
    "Issue": ".resources.outcome",
    "JobQuery": ".search.query",
    "SortKey": ".search.query",
    "TokenMatch": ".search.query",
    "JobRecord": ".storage.base",
    "JobStore": ".storage.base",
    "StoreUnavailable": ".storage.base",
    "VersionConflict": ".storage.base",
}

__all__ = [
    "STATUSES",
    "FhirError",
    "GuardedRoute",
    "Issue",
    "JobCancelled",
    "JobDeleted",
    "JobNotFound",
    "JobQuery",
    "JobRecord",
    "JobService",
    "JobStore",
    "PreconditionFailed",
    "RuleViolation",
    "Settings",
    "SmartAccess",
    "SortKey",
    "StoreUnavailable",
    "TokenMatch",
    "VersionConflict",
    "__version__",
    "create_app",
    "kick_off",
    "prefers_async",
]


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(source, __name__), name)
    globals()[name] = value  # looked up once
    return value
