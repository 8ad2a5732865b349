"""The URL of a provider's status callback for one attempt: one rule for both sides.

The worker gives Twilio this URL with every call it places (``worker.twilio``), and the
control API rebuilds the same URL to check the signature of what Twilio posts to it
(``control.api.twilio``): Twilio signs the URL it was given, not the one a request arrives
on behind a proxy, so both sides must spell it alike.
"""

from __future__ import annotations

# The control API's route that takes Twilio's status callbacks.
TWILIO_STATUS_PATH = "/api/v1/provider/twilio/status"


def twilio_status_url(base: str, attempt_id: int) -> str:
    """``base`` (``DIALGATE_TWILIO_CALLBACK_URL``, the public URL of the status route) with
    the attempt's id as its ``attempt`` query parameter."""
    return f"{base}?attempt={attempt_id}"
