"""What routes depend on: the service object, the caller, a checked object id, and what
a change records of its caller (actor, source).

The caller was authenticated and authorized by :class:`control.auth.security.Gatekeeper`
before the route ran; :func:`current` only reads what it found.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from control.auth.roles import Role, Who
from control.auth.security import MAX_ID
from control.auth.tokens import Tokens
from control.campaigns.service import Control
from shared.errors import InvalidInput, Unauthenticated
from shared.states import Source
from shared.text import ACTOR_MAX

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
    instead of it (``ops-bot (cli:alice)``); a label that would not fit is refused (422),
    never cut."""
    recorded = who.name if not label else f"{who.name} ({label})"
    if len(recorded) > ACTOR_MAX:
        room = max(0, ACTOR_MAX - len(who.name) - 3)
        raise InvalidInput(
            "actor", f"with this token's name the label may be at most {room} characters"
        )
    return recorded


def source(who: Who, claimed: Source) -> Source:
    """The source a transition records, from the caller's role: always ``system`` for a
    monitor, whatever it sent (it is automation; the CLI sends ``operator`` by default);
    ``system`` otherwise only from an admin, who may make a monitor token anyway; any other
    role records ``operator`` or ``api``, as the client said, and its ``system`` is refused
    (422), never rewritten."""
    role = who.principal.role
    if role is Role.MONITOR:
        return Source.SYSTEM
    if claimed is Source.SYSTEM and role is not Role.ADMIN:
        raise InvalidInput(
            "source",
            f"'system' is recorded for automation (a monitor token, or an admin); the role "
            f"{role.value!r} may send 'operator' or 'api'",
        )
    return claimed
