"""The control service's business logic, as one object that every route, loop and page
takes: :class:`Control`. Its parts live beside it, one concern a module:

- :mod:`.reads`: campaigns with counts and live gate, history, the fleet;
- :mod:`.transitions`: the write path of start, pause, resume, cancel, complete;
- :mod:`.setup`: creating a campaign and changing its settings;
- :mod:`.outcomes`: outcomes providers report after the call.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import redis
from sqlalchemy.orm import Session, sessionmaker

from control.campaigns.dnc import DncList
from control.campaigns.outcomes import Outcomes
from control.campaigns.setup import Setup
from control.campaigns.transitions import CanaryWatch, Cap, TransitionResult, Transitions
from control.campaigns.webhooks import Webhooks
from shared.dnc import DncSet
from shared.gate import Gate
from shared.keys import Keys
from shared.settings import Settings

__all__ = ["CanaryWatch", "Cap", "Control", "TransitionResult"]


class Control(Transitions, Setup, Outcomes):
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        redis_client: redis.Redis,
        gate: Gate,
        keys: Keys,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.redis = redis_client  # for all but the gate: nudges, counters, the fleet, DNC
        self.gate = gate
        self.keys = keys
        self.dnc = DncList(sessions, DncSet(redis_client, keys))
        self.webhooks = Webhooks(settings, sessions, redis_client, keys)
        self._answers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="answer")
        self._orgs: dict[int, str] = {}  # campaign id -> organisation (never changes)
