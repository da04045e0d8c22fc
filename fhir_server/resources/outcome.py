"""OperationOutcome builders and the one exception type that carries them to the client."""

from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: `code` is from the FHIR IssueType value set."""

    code: str
    diagnostics: str
    severity: Severity = "error"
    expression: str | None = None

    def to_json(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def all_ok(message: str = "All OK") -> dict[str, Any]:
    return operation_outcome([Issue("informational", message, severity="information")])


class FhirError(Exception):
    """An error answered with an OperationOutcome. It carries FHIR issue types, never an HTTP
    status: the HTTP layer derives that from the first issue's code (api/errors.py)."""

    def __init__(self, issues: list[Issue], headers: dict[str, str] | None = None) -> None:
        super().__init__()
        self.issues = issues
        self.headers = dict(headers or {})

    @classmethod
    def of(cls, code: str, diagnostics: str, expression: str | None = None) -> "FhirError":
        return cls([Issue(code, diagnostics, expression=expression)])

    @property
    def code(self) -> str:
        """The issue type that decides how the error is answered: the first error's."""
        for issue in self.issues:
            if issue.severity in ("fatal", "error"):
                return issue.code
        return self.issues[0].code if self.issues else "exception"

    def __str__(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)
