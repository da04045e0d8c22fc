"""The ceiling: the same Starlette + Uvicorn stack answering a fixed, pre-serialized AsyncJob
from a dict. Whatever the server does beyond this is the cost of being a FHIR server."""

import os

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .jobs import bench_job, job_id

MEDIA_TYPE = "application/fhir+json; charset=utf-8"
NOT_FOUND = Response(b'{"resourceType":"OperationOutcome"}', 404, media_type=MEDIA_TYPE)


def create_ceiling_app() -> Starlette:
    count = int(os.environ.get("BENCH_JOBS", "1000"))
    body = orjson.dumps(bench_job(0))
    jobs = {job_id(i): body for i in range(count)}

    async def read(request: Request) -> Response:
        found = jobs.get(request.path_params["id"])
        if found is None:
            return NOT_FOUND
        return Response(found, media_type=MEDIA_TYPE)

    return Starlette(routes=[Route("/fhir/R4/AsyncJob/{id}", read, methods=["GET"])])
