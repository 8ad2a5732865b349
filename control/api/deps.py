"""What routes depend on: the service object, the caller, a checked object id.

The caller was authenticated and authorized by :class:`control.auth.security.Gatekeeper`
before the route ran; :func:`current` only reads what it found.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from control.auth.roles import Who
from control.auth.security import MAX_ID
from control.auth.tokens import Tokens
from control.campaigns.service import Control
from shared.errors import Unauthenticated

ObjectId = Annotated[int, Path(ge=1, le=MAX_ID)]


async def current(request: Request) -> Who:
    """The caller, as the gatekeeper found them (async: it reads what is there, without a
    trip through the thread pool)."""
    w: Who | None = getattr(request.state, "who", None)
    if w is None:  # a route listed as public asked for a caller: a bug in the table
        raise Unauthenticated("this route needs a signed-in caller")
    return w


async def control_of(request: Request) -> Control:
    control: Control = request.app.state.control
    return control


async def tokens_of(request: Request) -> Tokens:
    tokens: Tokens = request.app.state.tokens
    return tokens


Caller = Annotated[Who, Depends(current)]
Service = Annotated[Control, Depends(control_of)]
TokenService = Annotated[Tokens, Depends(tokens_of)]


def actor(who: Who, label: str | None) -> str:
    """Who acted, as recorded: the token's name, and a client's label beside it, never
    instead of it (``ops-bot (cli:alice)``)."""
    return who.name if not label else f"{who.name} ({label})"
