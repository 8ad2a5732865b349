"""Creating a campaign and changing its settings (each change is audited)."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import update

from control.api.schemas import CampaignCreate, CampaignUpdate
from control.auth.roles import Who
from control.auth.trail import record
from control.campaigns.reads import Reads
from shared.clients import REDIS_ERRORS
from shared.models import DEFAULT_ORG, Campaign, Contact, utcnow
from shared.states import ContactState, Status

log = structlog.get_logger("dialgate.control")


class Setup(Reads):
    """A campaign's creation and its editable settings."""

    def create_campaign(self, data: CampaignCreate, who: Who | None = None) -> dict[str, Any]:
        with self.sessions.begin() as s:
            c = Campaign(
                org=who.org if who else DEFAULT_ORG,
                name=data.name,
                status=Status.DRAFT.value,
                version=0,
                max_concurrency=data.max_concurrency,
                max_lines=data.max_lines or data.max_concurrency,
                max_cps=data.max_cps,
                max_attempts=data.max_attempts,
                retry=data.stored_retry(),
                machine_detection=bool(data.machine_detection),
                timezone=data.timezone,
                calling_window=data.calling_window.model_dump() if data.calling_window else None,
                monitor=data.monitor.stored() if data.monitor else None,
            )
            s.add(c)
            s.flush()
            cid = c.id
            record(s, who, "campaign.created", f"campaign:{cid}", c.org, name=data.name)
        try:
            # no cap yet
            self.gate.write(
                cid,
                Status.DRAFT.value,
                0,
                data.max_concurrency,
                data.max_lines or data.max_concurrency,
                data.max_cps,
            )
        except REDIS_ERRORS as exc:  # the reconciler writes it later; draft never dials
            log.warning("gate_write_failed", campaign_id=cid, error=str(exc))
        log.info("campaign_created", campaign_id=cid)
        return self.campaign(cid)

    def update_campaign(
        self, campaign_id: int, data: CampaignUpdate, who: Who | None = None
    ) -> dict[str, Any]:
        """Change the timezone, calling window, monitor overrides, lines, calls per second,
        retries. Contacts waiting for the old window to open are fed again at once (the
        workers judge them against the new one); new limits reach the gate at once."""
        fields = data.model_fields_set
        with self.sessions.begin() as s:
            c = self.get(s, campaign_id)
            if "timezone" in fields and data.timezone is not None:
                c.timezone = data.timezone
            if "calling_window" in fields:
                w = data.calling_window
                c.calling_window = w.model_dump() if w is not None else None
            if "monitor" in fields:
                c.monitor = data.monitor.stored() if data.monitor is not None else None
            # null takes a field back to its default (lines: max_concurrency; no rate limit;
            # no retries; no machine detection)
            if "max_lines" in fields:
                c.max_lines = data.max_lines or c.max_concurrency
            if "max_cps" in fields:
                c.max_cps = data.max_cps
            if "retry" in fields:
                c.retry = data.stored_retry()
            if "machine_detection" in fields:
                c.machine_detection = bool(data.machine_detection)
            c.updated_at = utcnow()
            gate = (c.id, c.status, c.version, c.concurrency, c.max_lines, c.max_cps)
            s.execute(
                update(Contact)
                .where(
                    Contact.campaign_id == campaign_id,
                    Contact.state == ContactState.PENDING.value,
                    Contact.dial_after.is_not(None),
                )
                .values(dial_after=None)
            )
            changed = {f: getattr(data, f) for f in sorted(fields)}
            record(s, who, "campaign.updated", f"campaign:{campaign_id}", c.org, **_plain(changed))
        if fields & {"max_lines", "max_cps"}:
            try:  # the same version, new limits (the reconciler also repairs a missed one)
                self.gate.write(*gate)
            except REDIS_ERRORS as exc:
                log.warning("gate_write_failed", campaign_id=campaign_id, error=str(exc))
        log.info("campaign_updated", campaign_id=campaign_id, fields=sorted(fields))
        return self.campaign(campaign_id)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Settings as JSON can store them (models as their dicts)."""
    return {k: v.model_dump() if hasattr(v, "model_dump") else v for k, v in values.items()}
