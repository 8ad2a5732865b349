"""dialgate's one error tree (after httpx's ``_exceptions.py``).

::

    DialgateError
    ├── NotFound                 404  the campaign (or other object) does not exist
    ├── Conflict                 409  not allowed from the current state
    │   └── IllegalTransition         e.g. resume of a running campaign
    ├── InvalidInput             422  names the field and what is allowed
    │   └── ConfirmationRequired      cancel without {"confirm": true}
    └── Unavailable              503  a backing service (database, Redis, RabbitMQ) is away

HTTP status codes are attached here but only turned into responses at the API edge,
as ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations


class DialgateError(Exception):
    status_code = 500
    code = "internal"

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
