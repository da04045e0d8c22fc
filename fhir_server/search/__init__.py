"""FHIR search: query string -> backend-neutral query. No database code lives here."""
