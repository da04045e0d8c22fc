"""HTTP handlers: fhir.py (REST), health.py, errors.py (every error as an OperationOutcome)."""
