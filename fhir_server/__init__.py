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
from .resources.outcome import FhirError, Issue
from .storage.base import JobRecord, JobStore, StoreUnavailable, VersionConflict
from .version import __version__

__all__ = [
    "FhirError",
    "GuardedRoute",
    "Issue",
    "JobCancelled",
    "JobDeleted",
    "JobNotFound",
    "JobRecord",
    "JobService",
    "JobStore",
    "PreconditionFailed",
    "RuleViolation",
    "Settings",
    "SmartAccess",
    "StoreUnavailable",
    "VersionConflict",
    "__version__",
    "create_app",
    "kick_off",
    "prefers_async",
]
