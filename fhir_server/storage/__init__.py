"""Storage: the JobStore protocol and one module per backend."""

from .base import JobRecord, JobStore, StoreUnavailable, VersionConflict

__all__ = ["JobRecord", "JobStore", "StoreUnavailable", "VersionConflict"]
