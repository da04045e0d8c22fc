"""The ASGI application: Starlette with the request pipeline as its outermost layer."""

from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp

from .pipeline import RequestPipeline

Pipeline = Callable[..., RequestPipeline]


class FhirServerApp(Starlette):
    """Every request enters the pipeline (api/pipeline.py) first, in front of Starlette's own
    layers (its error layer, the middleware added to the app, its exception layer, the
    router), so the pipeline also counts the 500 answers of the error layer. Its direct
    dispatch calls the app's own routes past those layers — while no middleware was added:
    one that was must see every request."""

    def __init__(self, *, pipeline: Pipeline, **kwargs: Any) -> None:
        self.pipeline = pipeline
        self.direct_dispatch = True
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        return self.pipeline(
            super().build_middleware_stack(),
            routes=self.router.routes,
            handlers=self.exception_handlers,
            direct_dispatch=self.direct_dispatch and not self.user_middleware,
        )
