"""Control-plane subscriber: one thread per worker process.

Consumes ``<namespace>.control`` through the worker's own queue (exclusive, or a quorum
queue with ``DIALGATE_AMQP_QUORUM``: :func:`shared.queue.control_queue_options`). On every
(re)connection it first reads every gate from Redis (so events missed while away do
not matter), then applies events in any order: a version not newer than the one
already heard of is ignored; a newer one raises the minimum gate version this worker's
claims demand, and is acknowledged in Redis (``acks`` hash) like observedGeneration.
Nothing here ever opens a gate. A malformed, oversized or (with ``DIALGATE_CONTROL_KEY``)
unsigned message is logged and dropped.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime

import pika
import pika.exceptions
import structlog
from pydantic import ValidationError

from shared import metrics
from shared.clients import REDIS_ERRORS, amqp_parameters
from shared.keys import Keys
from shared.messages import (
    HANGUP_ROUTING_KEY,
    MAX_CONTROL_BYTES,
    SIGNATURE_HEADER,
    ControlMessage,
    HangupRequest,
    signed_by,
)
from shared.queue import control_queue_options
from worker.runtime import Runtime

log = structlog.get_logger("dialgate.subscriber")


class Subscriber:
    def __init__(self, runtime: Runtime, keys: Keys) -> None:
        self.runtime = runtime
        self.keys = keys
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> Subscriber:
        self._thread = threading.Thread(target=self._run, name="control-subscriber", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """The consuming loop sees the stop within half a second, deletes a quorum control
        queue and closes its connection."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        backoff = 0.2
        while not self.stop_event.is_set():
            try:
                self._consume()
                backoff = 0.2
            except (pika.exceptions.AMQPError, OSError, *REDIS_ERRORS) as exc:
                self.connected.clear()
                log.warning(
                    "control_subscriber_disconnected", error=repr(exc)[:300], retry_in_s=backoff
                )
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _consume(self) -> None:
        params = amqp_parameters(self.runtime.settings)
        conn = pika.BlockingConnection(params)
        try:
            ch = conn.channel()
            ch.exchange_declare(self.keys.control_exchange, exchange_type="topic", durable=True)
            queue = self.keys.control_queue(self.runtime.worker_id)
            ch.queue_declare(queue, **control_queue_options(self.runtime.settings))
            ch.queue_bind(queue, self.keys.control_exchange, routing_key="campaign.#")
            ch.queue_bind(queue, self.keys.control_exchange, routing_key=HANGUP_ROUTING_KEY)
            # Bound first, then read the gates: anything after this read arrives as an event.
            self.sync_from_gates()
            ch.basic_qos(prefetch_count=100)
            ch.basic_consume(queue, self._on_message)
            self.connected.set()
            log.info("control_subscriber_connected", queue=queue)
            while not self.stop_event.is_set() and conn.is_open:
                conn.process_data_events(time_limit=0.5)
            if self.runtime.settings.amqp_quorum and conn.is_open:  # not left to expire
                with contextlib.suppress(pika.exceptions.AMQPError):
                    ch.queue_delete(queue)
        finally:
            self.connected.clear()
            if conn.is_open:
                with contextlib.suppress(Exception):
                    conn.close()

    def sync_from_gates(self) -> None:
        gate = self.runtime.gate
        for cid, version in gate.versions(sorted(gate.campaign_ids())).items():
            if version is not None:
                self._apply(cid, version)

    def _apply(self, campaign_id: int, version: int) -> bool:
        """Raise the version this worker demands and acknowledge it; False when stale."""
        if not self.runtime.observe(campaign_id, version):
            return False
        try:
            self.runtime.gate.ack(campaign_id, self.runtime.worker_id, version)
        except REDIS_ERRORS as exc:
            log.warning("ack_failed", campaign_id=campaign_id, error=str(exc))
        return True

    def _on_message(self, ch, method, props, body: bytes) -> None:  # type: ignore[no-untyped-def]
        key = self.runtime.settings.secret("control_key")
        try:
            if len(body) > MAX_CONTROL_BYTES:
                raise _Dropped("oversized", f"{len(body)} bytes")
            if key and not signed_by(body, (props.headers or {}).get(SIGNATURE_HEADER), key):
                raise _Dropped("bad_signature", "missing or wrong signature")
            event = ControlMessage.validate_json(body)
        except ValidationError as exc:
            log.warning("control_message_dropped", reason="invalid", error=str(exc)[:300])
        except _Dropped as exc:
            log.warning("control_message_dropped", reason=exc.reason, error=exc.detail)
        else:
            if isinstance(event, HangupRequest):
                self._hang_up(event)
                ch.basic_ack(method.delivery_tag)
                return
            fresh = self._apply(event.campaign_id, event.version)
            if event.version >= self.runtime.observed.get(event.campaign_id, 0):
                # Not an old event's: a pause since resumed must not end today's calls.
                self.runtime.hang_up(event.campaign_id, event.hangup)
            if fresh:
                lag = datetime.now(UTC) - event.at
                metrics.PROPAGATION_SECONDS.observe(max(0.0, lag.total_seconds()))
            log.debug(
                "control_event_applied",
                campaign_id=event.campaign_id,
                version=event.version,
                action=event.action.value,
            )
        ch.basic_ack(method.delivery_tag)

    def _hang_up(self, request: HangupRequest) -> None:
        """An emergency stop's hang-up: the campaign's calls, or every campaign's."""
        self.runtime.hang_up(request.campaign_id, request.hangup)


class _Dropped(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
