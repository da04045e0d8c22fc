"""FHIR R4 server for AsyncJob resources, with an eHealth job-status adapter."""

__version__ = "0.1.0"
