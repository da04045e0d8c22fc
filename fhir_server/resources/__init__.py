"""FHIR resources the server speaks: AsyncJob, OperationOutcome, Bundle, CapabilityStatement."""
