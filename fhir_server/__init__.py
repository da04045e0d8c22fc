"""FHIR R4 server for AsyncJob resources, with an eHealth job-status adapter.

The names below are the public API for producers (services that run jobs) and embedders
(applications that serve the FHIR API beside their own routes); everything else may change.
"""

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
from .version import __version__

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
