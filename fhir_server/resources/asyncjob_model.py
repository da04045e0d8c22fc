"""The AsyncJob resource (Medplum's definition) as a fhir.resources model: what validates a
job that is not plain (asyncjob.py). A module of its own, imported when first needed: with
fhir.resources it takes ~70 ms, which a command that meets only plain jobs (`load`) saves."""

from typing import Any

from fhir.resources.R4B import domainresource, fhirtypes
from pydantic import Field

from .asyncjob_profile import STATUSES


def _element(alias: str, **extra: Any) -> Any:
    return Field(default=None, alias=alias, json_schema_extra={"element_property": True, **extra})


def _primitive_extension(alias: str) -> Any:
    return Field(default=None, alias=f"_{alias}")


class AsyncJob(domainresource.DomainResource):
    """Contains details of long running asynchronous/background jobs."""

    __resource_type__ = "AsyncJob"

    status: fhirtypes.CodeType | None = _element("status", enum_values=list(STATUSES))
    status__ext: fhirtypes.FHIRPrimitiveExtensionType | None = _primitive_extension("status")
    requestTime: fhirtypes.InstantType | None = _element("requestTime")
    requestTime__ext: fhirtypes.FHIRPrimitiveExtensionType | None = _primitive_extension(
        "requestTime"
    )
    transactionTime: fhirtypes.InstantType | None = _element("transactionTime")
    transactionTime__ext: fhirtypes.FHIRPrimitiveExtensionType | None = _primitive_extension(
        "transactionTime"
    )
    request: fhirtypes.UriType | None = _element("request")
    request__ext: fhirtypes.FHIRPrimitiveExtensionType | None = _primitive_extension("request")
    output: fhirtypes.ParametersType | None = _element("output")
    type: fhirtypes.CodeType | None = _element("type")
    type__ext: fhirtypes.FHIRPrimitiveExtensionType | None = _primitive_extension("type")
    dataVersion: fhirtypes.IntegerType | None = _element("dataVersion")
    dataVersion__ext: fhirtypes.FHIRPrimitiveExtensionType | None = _primitive_extension(
        "dataVersion"
    )
    minServerVersion: fhirtypes.StringType | None = _element("minServerVersion")
    minServerVersion__ext: fhirtypes.FHIRPrimitiveExtensionType | None = _primitive_extension(
        "minServerVersion"
    )

    @classmethod
    def elements_sequence(cls) -> list[str]:
        return [
            "id",
            "meta",
            "implicitRules",
            "language",
            "text",
            "contained",
            "extension",
            "modifierExtension",
            "status",
            "requestTime",
            "transactionTime",
            "request",
            "output",
            "type",
            "dataVersion",
            "minServerVersion",
        ]

    def get_required_fields(self) -> list[tuple[str, str | None]]:
        return [
            ("status", "status__ext"),
            ("requestTime", "requestTime__ext"),
            ("request", "request__ext"),
        ]
