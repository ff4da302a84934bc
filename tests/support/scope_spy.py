"""A test plugin that records `scope["mockforge"]` of every HTTP request after the app answered."""

from __future__ import annotations

from typing import Any

import pluggy
from starlette.middleware import Middleware

__all__ = ["ScopeSpyPlugin"]

hookimpl = pluggy.HookimplMarker("mockforge")


class ScopeSpyPlugin:
    """Register as a plugin; `seen` holds a copy of each request's host scope contract."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    @hookimpl
    def mockforge_middleware(self, host: Any) -> list[Middleware]:
        """A pure-ASGI layer that copies the scope contract once the response is done."""
        seen = self.seen

        class Spy:
            def __init__(self, app: Any) -> None:
                self.app = app

            async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                await self.app(scope, receive, send)
                if scope["type"] == "http":
                    seen.append(dict(scope["mockforge"]))

        return [Middleware(Spy)]
