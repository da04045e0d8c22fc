"""The job lifecycle: status rules, the JobService producer API, kick-off, retention."""

from .rules import JobCancelled, RuleViolation
from .service import JobDeleted, JobNotFound, JobService, PreconditionFailed

__all__ = [
    "JobCancelled",
    "JobDeleted",
    "JobNotFound",
    "JobService",
    "PreconditionFailed",
    "RuleViolation",
]
