"""A real SIP far end for tests: SIPp (``/usr/bin/sipp``, Debian's sip-tester) running
``tests/sipp/uas.xml``, and what it saw, read from its own message trace.

:func:`running_sipp` starts SIPp on a free loopback UDP port (under a global ``-timeout``),
waits until it listens, and stops it by its PID when the block ends. The far end's answer
depends on the number dialed: :func:`number` makes one for an outcome; whatever rings
(``ring``, and ``answer``/``answer_wait``/``slow`` before they answer) takes a CANCEL at
any time and ends with 487. :class:`SippLog`
reads SIPp's ``-trace_msg`` file (re-read on every call: SIPp appends while it runs), so a
test checks what reached the far end, not what dialgate says it sent.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

SIPP = "/usr/bin/sipp"
SCENARIO = Path(__file__).resolve().parents[1] / "sipp" / "uas.xml"
USER, PASSWORD = "dialgate", "far-end-secret"  # what the scenario's 401 branch accepts

# outcome -> the three digits after +4930 that pick the scenario's branch
OUTCOMES = {
    "answer": "200",  # rings ring_ms, talks talk_ms, then the far end hangs up
    "answer_wait": "201",  # rings ring_ms, then waits for our BYE
    "busy": "486",
    "busy_everywhere": "600",
    "decline": "603",
    "error": "500",
    "ring": "180",  # rings until cancelled (487)
    "auth": "401",  # challenges, then answers (and waits for our BYE) or 403
    "slow": "100",  # silent for slow_ms (we retransmit), then rings ring_ms, answers, waits
    "race": "102",  # silent for slow_ms, rings; answers our CANCEL and then the INVITE (200)
    "unknown": "404",
}
_NUMBER = re.compile(r"^INVITE sips?:([^@;>\s]+)@")
_SEPARATOR = re.compile(r"^-{10,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*$", re.M)


def number(outcome: str, n: int) -> str:
    """The E.164 number of the ``n``-th call (0 ≤ n < 10⁶) meant to end as ``outcome``."""
    if not 0 <= n < 1_000_000:
        raise ValueError("n must be below 10**6")
    return f"+4930{OUTCOMES[outcome]}{n:06d}"


def available() -> bool:
    return os.access(SIPP, os.X_OK)


@dataclass(frozen=True)
class Message:
    """One SIP message as SIPp logged it (``sent`` by SIPp, or received)."""

    time: float  # unix seconds
    sent: bool
    start: str  # the start line
    headers: dict[str, list[str]]  # lower-case name -> values, in order

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    @property
    def call_id(self) -> str:
        return self.header("call-id") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = (self.header("cseq") or "0 ?").partition(" ")
        return int(number), method.strip()

    @property
    def branch(self) -> str:
        m = re.search(r"branch=([^;,\s]+)", self.header("via") or "")
        return m.group(1) if m else ""


@dataclass
class Invite:
    """The first INVITE of a call as the far end received it."""

    time: float  # its first transmission
    number: str
    call_id: str
    attempt: int | None  # X-Dialgate-Attempt
    campaign: int | None  # X-Dialgate-Campaign
    headers: dict[str, list[str]]
    copies: int = 1  # transmissions of this INVITE (same branch): 1 + retransmissions


@dataclass
class Call:
    """Every message of one Call-ID, from the far end's side."""

    call_id: str
    messages: list[Message] = field(default_factory=list)

    @property
    def start(self) -> float:
        return self.messages[0].time

    @property
    def end(self) -> float:
        return self.messages[-1].time

    @property
    def over(self) -> bool:
        """Whether the far end is done with the call: its last message is the ACK of a final
        response, or the 200 to a BYE (every branch of the scenario ends so)."""
        last = self.messages[-1]
        if last.start.startswith("ACK "):
            return not last.sent
        return last.start.startswith("SIP/2.0 200") and last.cseq[1] == "BYE"

    def starts(self, word: str) -> list[Message]:
        """The messages whose start line begins with ``word`` (a method, or ``SIP/2.0 487``)."""
        return [m for m in self.messages if m.start.startswith(word)]


def _parse(text: str) -> list[Message]:
    messages = []
    parts = _SEPARATOR.split(text)
    # parts: [before, stamp, body, stamp, body, ...]
    for stamp, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = body.strip("\n").split("\n")
        if len(lines) < 3:
            continue  # the message SIPp is writing right now
        sent = " sent " in lines[0]
        rest = [line.rstrip("\r") for line in lines[1:]]
        while rest and not rest[0].strip():
            rest.pop(0)
        if not rest:
            continue
        headers: dict[str, list[str]] = {}
        for line in rest[1:]:
            if not line.strip():
                break
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        messages.append(Message(when, sent, rest[0].strip(), headers))
    return messages


class SippLog:
    """SIPp's message trace, read afresh by every method."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def messages(self) -> list[Message]:
        try:
            return _parse(self.path.read_text(encoding="utf-8", errors="replace"))
        except FileNotFoundError:
            return []

    def calls(self) -> dict[str, Call]:
        """Call-ID -> the call's messages, in the order SIPp logged them."""
        calls: dict[str, Call] = {}
        for m in self.messages():
            calls.setdefault(m.call_id, Call(m.call_id)).messages.append(m)
        return calls

    def settled(self, call_ids: list[str], timeout: float = 5.0) -> dict[str, Call]:
        """The calls of ``call_ids`` once the far end is done with each (SIPp logs a message
        when it has handled it, a moment after our side may have reported the end)."""
        deadline = time.monotonic() + timeout
        while True:
            calls = self.calls()
            if all(c in calls and calls[c].over for c in call_ids):
                return {c: calls[c] for c in call_ids}
            if time.monotonic() > deadline:
                states = {c: c in calls and calls[c].over for c in call_ids}
                raise AssertionError(f"the far end is not done with every call: {states}")
            time.sleep(0.02)

    def invites(self) -> list[Invite]:
        """Each call's first INVITE (its lowest CSeq), in the order they first arrived; an
        INVITE sent again after a challenge (higher CSeq) is the same call, not another."""
        found: dict[str, Invite] = {}
        branches: dict[str, str] = {}
        for m in self.messages():
            if m.sent or not m.start.startswith("INVITE "):
                continue
            known = found.get(m.call_id)
            if known is not None:
                if m.branch == branches[m.call_id]:
                    known.copies += 1
                continue
            match = _NUMBER.search(m.start)
            found[m.call_id] = Invite(
                time=m.time,
                number=match.group(1) if match else "",
                call_id=m.call_id,
                attempt=_int(m.header("x-dialgate-attempt")),
                campaign=_int(m.header("x-dialgate-campaign")),
                headers=m.headers,
            )
            branches[m.call_id] = m.branch
        return sorted(found.values(), key=lambda i: i.time)

    def invites_after(self, t: float) -> list[Invite]:
        """The calls whose first INVITE arrived after unix time ``t``."""
        return [i for i in self.invites() if i.time > t]

    def invites_by_number(self) -> dict[str, list[Invite]]:
        found: dict[str, list[Invite]] = {}
        for i in self.invites():
            found.setdefault(i.number, []).append(i)
        return found

    def max_invites_per_second(self) -> int:
        """The most calls whose first INVITE arrived within any 1 s (retransmissions and
        re-sent challenged INVITEs not counted)."""
        times = [i.time for i in self.invites()]
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= 1.0:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def max_concurrent_calls(self) -> int:
        """The most calls up at once, a call lasting from its first message (the INVITE) to
        its last (the final ACK, or the BYE's 200), as the far end logged them."""
        edges = []
        for call in self.calls().values():
            edges += [(call.start, 1), (max(call.end, call.start + 1e-6), -1)]
        best = up = 0
        # A call ending at the very time another starts was not up with it: ends go first.
        for _, step in sorted(edges):
            up += step
            best = max(best, up)
        return best


def _int(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdigit() else None


@dataclass
class Sipp:
    target: str  # a DIALGATE_SIP_TARGET template: sip:{phone}@127.0.0.1:PORT
    port: int
    log: SippLog
    pid: int
    errors: Path  # SIPp's stderr


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    """Whether a UDP socket is bound to ``port`` (read from /proc/net/udp: binding a probe
    socket to find out could take the port from SIPp)."""
    with open("/proc/net/udp", encoding="ascii") as f:
        return any(line.split()[1].endswith(f":{port:04X}") for line in list(f)[1:])


@contextmanager
def running_sipp(
    tmp_dir: Path,
    talk_ms: int = 200,
    ring_ms: int = 50,
    slow_ms: int = 400,
    timeout_s: int = 120,
) -> Iterator[Sipp]:
    """SIPp as the far end on 127.0.0.1 for the block; stopped (by PID) when it ends.

    ``talk_ms``: how long an ``answer`` call talks before the far end hangs up; ``ring_ms``:
    how long answered calls ring first; ``slow_ms``: how long a ``slow`` call is silent.
    SIPp quits by itself after ``timeout_s`` whatever happens."""
    if not available():
        raise RuntimeError(f"{SIPP} is missing: install sip-tester (apt-get install sip-tester)")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port, media = _free_udp_port(), _free_udp_port()
    trace, errors = tmp_dir / f"sipp-{port}-messages.log", tmp_dir / f"sipp-{port}-errors.log"
    cmd = [SIPP, "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(port), "-mp", str(media)]
    cmd += ["-nostdin", "-trace_msg", "-message_file", str(trace), "-timeout", f"{timeout_s}s"]
    cmd += [
        "-d",
        str(talk_ms),
        "-recv_timeout",
        str(max(1, ring_ms)),
        "-set",
        "slow_ms",
        str(slow_ms),
    ]
    cmd += ["-buff_size", str(4 * 1024 * 1024), "-max_recv_loops", "10000"]
    with open(errors, "wb") as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, cwd=tmp_dir
        )
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"SIPp did not start on UDP port {port} (exit {proc.poll()}): "
                    + errors.read_text(errors="replace")[-2000:]
                )
            time.sleep(0.02)
        yield Sipp(f"sip:{{phone}}@127.0.0.1:{port}", port, SippLog(trace), proc.pid, errors)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
