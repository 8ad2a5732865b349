"""Which telephony back end a worker process uses (``DIALGATE_PROVIDER``), checked at start.

:func:`check` finds bad configuration before the worker takes a message (the worker stops
with one line naming the setting); :func:`build` makes the back end.
"""

from __future__ import annotations

from shared.settings import Settings, sim_weights
from worker.provider import Provider, Report, SimulatedProvider

# Settings each back end cannot do without.
REQUIRED: dict[str, tuple[str, ...]] = {
    "simulated": (),
    "sip": ("sip_target", "sip_from"),
    "twilio": ("twilio_account_sid", "twilio_auth_token", "twilio_from", "twilio_callback_url"),
}


def check(settings: Settings) -> None:
    """Raise ValueError naming the first setting the chosen back end lacks."""
    for name in REQUIRED[settings.provider]:
        if not getattr(settings, name):
            raise ValueError(
                f"DIALGATE_{name.upper()} is required with DIALGATE_PROVIDER={settings.provider}"
                " (docs/telephony.md)"
            )
    if settings.provider == "sip" and bool(settings.sip_username) != bool(settings.sip_password):
        raise ValueError("DIALGATE_SIP_USERNAME and DIALGATE_SIP_PASSWORD go together")


def build(settings: Settings, report: Report) -> Provider:
    check(settings)
    if settings.provider == "sip":
        from worker.sip import SipProvider

        return SipProvider(settings, report)
    if settings.provider == "twilio":
        from worker.twilio import TwilioProvider

        return TwilioProvider(settings, report)
    return SimulatedProvider(
        report,
        settings.sim_latency_ms,
        settings.sim_failure_rate,
        settings.sim_call_log,
        settings.sim_hold_file,
        settings.sim_fault_file,
        settings.sim_ring_ms,
        settings.sim_talk_ms,
        sim_weights(settings.sim_dispositions),
    )
