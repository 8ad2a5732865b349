"""dialgate's one error tree (after httpx's ``_exceptions.py``).

::

    DialgateError
    ├── Unauthenticated          401  no token, or a wrong, expired or revoked one
    ├── Forbidden                403  the token's role does not allow this
    ├── NotFound                 404  does not exist (or belongs to another organisation)
    ├── Conflict                 409  not allowed from the current state
    │   └── IllegalTransition         e.g. resume of a running campaign
    ├── InvalidInput             422  names the field and what is allowed
    │   └── ConfirmationRequired      cancel without {"confirm": true}
    ├── TooLarge                 413  the request body is over the limit
    ├── TooManyRequests          429  too many failed sign-ins from this address
    └── Unavailable              503  a backing service (database, Redis, RabbitMQ) is away

HTTP status codes are attached here but only turned into responses at the API edge,
as ``{"error": {"code", "message"}}`` (and ``details`` where an error has them).
"""

from __future__ import annotations


class DialgateError(Exception):
    status_code = 500
    code = "internal"
    # What the answer carries beside the message, for a program (e.g. the holds that remain).
    details: list[dict[str, object]] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DialgateError):
    status_code = 404
    code = "not_found"


class Conflict(DialgateError):
    status_code = 409
    code = "conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class InvalidInput(DialgateError):
    status_code = 422
    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ConfirmationRequired(InvalidInput):
    code = "confirmation_required"


class Unavailable(DialgateError):
    status_code = 503
    code = "unavailable"


class Unauthenticated(DialgateError):
    status_code = 401
    code = "unauthenticated"


class Forbidden(DialgateError):
    status_code = 403
    code = "forbidden"


class TooManyRequests(DialgateError):
    status_code = 429
    code = "too_many_requests"


class TooLarge(DialgateError):
    status_code = 413
    code = "too_large"
