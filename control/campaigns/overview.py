"""Everything the campaign page shows, as one read: the campaign, its recent transitions,
the first dial after the latest resume, and (optionally) the diagnosis.

The page (:mod:`control.web.pages`), ``GET /api/v1/campaigns/{id}/overview`` and the CLI's
``show`` and ``watch`` all read it from here, so they show the same facts.
"""

from __future__ import annotations

from typing import Any

from control.campaigns import diagnosis
from control.campaigns.service import Control

RECENT_TRANSITIONS = 10


def overview(control: Control, campaign_id: int, diagnose: bool = True) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "campaign": control.campaign(campaign_id),
        "transitions": control.transitions(campaign_id, RECENT_TRANSITIONS),
        "first_after_resume": control.first_dial_after_resume(campaign_id),
    }
    if diagnose:
        facts["diagnosis"] = diagnosis.diagnose(control, campaign_id)
    return facts
