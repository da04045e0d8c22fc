"""Runs the ceiling app on one uvicorn worker: python -m benchmarks.serve_ceiling PORT."""

import sys

import uvicorn

from .ceiling_app import create_ceiling_app

if __name__ == "__main__":
    uvicorn.run(
        create_ceiling_app(),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
    )
