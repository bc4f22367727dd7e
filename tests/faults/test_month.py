"""A simulated month: the real monitor core through 30 days of outages, flaps and restarts on an injected clock.

MonitorService runs on a real SQLite file and a real alert channel (the outbox: one .eml file per alert; an SMTP
conversation per alert would make thousands of alerts too slow for the suite), driven by ``receive`` and
``tick(now)`` with no threads and no sleeping. Devices beat every two minutes and go silent at random, for random
lengths and for random causes (a power cut, the Internet, an agent restart, beats lost on the way); some go
through bursts of silences near max_silence_s (flaps), and the monitor is stopped and opened again from the same
data_dir at random moments.

A reference written here from the documented rules says what must come of it: a silence longer than
max_silence_s is one DOWN, a REMINDER every reminder_every_s while it lasts, and one UP (with its length and
cause), unless a restart's grace (no DOWN or reminder before
the monitor has run max_silence_s) lets the device come back first; a shorter silence is nothing; and a device that
changes state more than ``flap_threshold`` times within an hour is flapping (appliance.monitor.flapping): its
changes are recorded but not alerted, one FLAPPING alert goes out instead, and one STEADY once it has kept one
state for flap_quiet_s. The test compares every stored event and every e-mail with it, and checks that the
monitor's memory does not grow from week to week.
"""

import email
import email.policy
import gc
import heapq
import math
import random
import re
import time
import tracemalloc
from collections import Counter, deque

import pytest

from appliance.alerts.channels import OutboxChannel
from appliance.clock import Now
from appliance.config.schema import Alerts, Config, Monitor, MonitoredDevice
from appliance.monitor.causes import LABELS
from appliance.monitor.service import MonitorService
from appliance.timefmt import format_duration

pytestmark = pytest.mark.fault

SEED = 20261125
DEVICES = tuple(f"pi-{i}" for i in range(6))
DAYS = 30
INTERVAL_S = 120.0  # the agent beats every minute by default; every two keeps the month within its time
MAX_SILENCE_S = 300.0
FLAP_THRESHOLD = 4
FLAP_QUIET_S = 3600.0
REMINDER_EVERY_S = 7200.0
WINDOW_S = 3600.0  # flapping's window (appliance.monitor.flapping.WINDOW_S), written out again
START = Now(mono=5000.0, wall=1_767_225_600.0)  # 2026-01-01 00:00 UTC
END = DAYS * 86400.0
CAUSES = ("power-cut", "internet", "agent-restart", "unknown")
# A week of outages, alerts and restarts may leave this much allocated behind it (the store's caches, interned
# strings); the history itself lives in SQLite, not in Python objects. A leak of a few hundred bytes per outage
# (about a thousand a week here) would not pass.
LEFT_BEHIND_BYTES = 256 * 1024
# A week's peak (about 1.7-2.0 MiB: a restart holds the old service and the new one at once, a delivery round
# builds several e-mails) varies by about 15 % from week to week with what happens in it; the fourth week's may
# exceed the first's by at most this share.
PEAK_GROWTH = 0.25


class Clock:
    """Both clocks at START + ``t`` seconds; the test moves ``t``."""

    def __init__(self):
        self.t = 0.0

    def now(self):
        return START.later(self.t)


# -- the plan: who is silent when, for how long and why ------------------------------------------------------------


def plan_silences(rng):
    """{device: [(last beat before the silence, silence length s, cause)]}: the gaps between two beats longer than
    one interval. A silence is never within a second of max_silence_s (a tie of a beat and its deadline)."""
    plans = {}
    for name in DEVICES:
        t, silences = rng.uniform(0, INTERVAL_S), []
        while True:
            flap = rng.random() < 0.12
            for i in range(rng.randint(5, 9) if flap else 1):
                t += INTERVAL_S * (rng.randint(1, 2) if flap else rng.randint(3, 60))
                if flap:
                    length = rng.uniform(MAX_SILENCE_S - 60, MAX_SILENCE_S + 60)
                elif rng.random() < 0.4:
                    length = rng.uniform(INTERVAL_S + 5, MAX_SILENCE_S - 5)  # short: beats lost, no alert due
                else:
                    length = math.exp(rng.uniform(math.log(MAX_SILENCE_S + 1), math.log(6 * 3600)))
                if abs(length - MAX_SILENCE_S) < 1.0:
                    length += 2.0
                if t + length > END - 3600:
                    break
                silences.append((t, length, rng.choice(CAUSES)))
                t += length
            else:
                continue
            break
        plans[name] = silences
    return plans


def beats(name, silences):
    """(t, device, fields) of every heartbeat ``name`` sends, in time order, as the agent would build them."""
    boot, booted_at, agent_at, seq = 1, -3600.0, -3590.0, 0
    t = silences[0][0] % INTERVAL_S
    failures = None
    for last, length, cause in [*silences, (END, 0.0, None)]:
        while t <= last + 1e-6:
            seq += 1
            yield t, name, {"boot_id": f"{name}-boot-{boot}", "uptime_s": t - booted_at, "agent_started_at": agent_at,
                            "seq": seq, "send_failures": failures}
            failures = None
            t += INTERVAL_S
        t = last + length  # the first beat after the silence
        if cause == "power-cut":
            boot, booted_at, agent_at, seq = boot + 1, t - 20.0, t - 12.0, 0
        elif cause == "internet":
            failures = [{"from": last + INTERVAL_S, "to": t - 1.0, "failures": int(length // INTERVAL_S)}]
        elif cause == "agent-restart":
            agent_at, seq = t - 5.0, 0


def plan_restarts(rng):
    """Times the monitor is stopped and opened again at once (beats keep coming), about two a day."""
    return sorted(rng.uniform(3600, END - 3600) for _ in range(2 * DAYS))


# -- the reference: what the documented rules say must come of the plan --------------------------------------------


def _grace(due, since, restarts):
    """``due`` moved on by each restart after ``since`` and before it: no deadline fires before a restarted
    monitor has run max_silence_s."""
    for r in restarts:
        if since < r < due:
            due = max(due, r + MAX_SILENCE_S)
    return due


def expected_alerts(silences, restarts):
    """(alerts, stored) for one device: alerts [(kind, t, silence)] that must go out, in order; stored
    [(kind, t, silence)] the DOWN, REMINDER and UP events the monitor must store, alerted or not."""
    stored = []
    for last, length, cause in silences:
        silence, up_at = (last, length, cause), last + length
        down_at = _grace(last + MAX_SILENCE_S, last, restarts)
        if down_at >= up_at:
            continue
        stored.append(("down", down_at, silence))
        alerted = down_at
        while True:  # reminders: every reminder_every_s after the last alert while it lasts
            due = _grace(alerted + REMINDER_EVERY_S, alerted, restarts)
            if due >= up_at:
                break
            stored.append(("reminder", due, silence))
            alerted = due
        stored.append(("up", up_at, silence))
    alerts, recent, episode, pending_restarts = [], deque(maxlen=FLAP_THRESHOLD + 1), None, deque(restarts)
    for kind, t, silence in stored:
        if episode is not None and t >= episode + FLAP_QUIET_S:
            alerts.append(("steady", episode + FLAP_QUIET_S, None))
            episode = None
        if kind == "reminder":  # not a change; summarised while flapping
            if episode is None:
                alerts.append((kind, t, silence))
            continue
        while pending_restarts and pending_restarts[0] < t:
            pending_restarts.popleft()
            recent.clear()  # a restarted monitor keeps open episodes, not the changes before one
        if episode is not None:
            episode = t
            continue
        recent.append(t)
        if len(recent) > FLAP_THRESHOLD and t - recent[0] < WINDOW_S:
            alerts.append(("flapping", t, silence))
            episode = t
            recent = deque(maxlen=FLAP_THRESHOLD + 1)
            continue
        alerts.append((kind, t, silence))
    if episode is not None and episode + FLAP_QUIET_S <= END:
        alerts.append(("steady", episode + FLAP_QUIET_S, None))
    return alerts, stored


# -- the run -----------------------------------------------------------------------------------------------------


class Month:
    def __init__(self, tmp_path):
        self.outbox = tmp_path / "outbox"
        self.config = Config(
            data_dir=str(tmp_path / "data"), alerts=Alerts(outbox_dir=str(self.outbox)),
            monitor=Monitor(devices=tuple(MonitoredDevice(name=n, token=f"{n}-token-0123", max_silence_s=MAX_SILENCE_S,
                                                          reminder_every_s=REMINDER_EVERY_S) for n in DEVICES),
                            flap_threshold=FLAP_THRESHOLD, flap_quiet_s=FLAP_QUIET_S,
                            # More than there are devices: no mass silence (selfcheck) holds DOWNs back.
                            mass_silence_min_devices=len(DEVICES) + 1))
        self.clock = Clock()
        self.service = None
        self.open()

    def open(self):
        channel = OutboxChannel(str(self.outbox), stream=_Discard())
        self.service = MonitorService(self.config, clock=self.clock, channels=[channel])

    def restart(self):
        self.deliver()
        self.service.stop()
        self.open()

    def deliver(self):
        self.service.dispatcher.tick("outbox", self.clock.now())

    def beat(self, name, fields):
        now = self.clock.now()
        body = {"device": name, "sent_at": now.wall, **fields}
        if body["send_failures"] is None:
            del body["send_failures"]
        else:
            body["send_failures"] = [{**w, "from": START.wall + w["from"], "to": START.wall + w["to"]}
                                     for w in body["send_failures"]]
        body["agent_started_at"] = START.wall + body["agent_started_at"]
        answer = self.service.receive(_json(body), "application/json", f"Bearer {name}-token-0123")
        assert answer.status == 200, answer.body

    def run(self, plans, restarts, *, on_week):
        """Every beat and restart in time order, with the scheduler ticked at each deadline it names."""
        arrivals = heapq.merge(*(beats(n, plans[n]) for n in DEVICES), key=lambda b: b[0])
        restarts, week, due = deque(restarts), 1, 0.0
        for t, name, fields in arrivals:
            while True:  # the scheduler's deadlines and the restarts before this beat
                nxt = min(due, restarts[0] if restarts else math.inf)
                if nxt >= t:
                    break
                self.clock.t = max(self.clock.t, nxt)
                if restarts and restarts[0] <= nxt:
                    restarts.popleft()
                    self.restart()
                due = self._tick()
            if t >= week * 7 * 86400:
                on_week(week)
                week += 1
            self.clock.t = t
            self.beat(name, fields)
            due = self._tick()
            if int(t) % 3600 < INTERVAL_S:
                self.deliver()
        while due < END:  # the quiet hour at the end: episodes come to their STEADY
            self.clock.t = due
            due = self._tick()
        self.clock.t = END
        self.service.tick(self.clock.now())
        self.deliver()
        self.service.flush()


    def _tick(self):
        """Tick now; return when the scheduler next has work (at least a microsecond on, so time moves)."""
        return self.clock.t + max(1e-6, self.service.tick(self.clock.now()))


class _Discard:
    """Where the outbox prints each alert: nowhere (a StringIO would hold every block, and count as the monitor's
    memory)."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass


def _json(body):
    import json

    return json.dumps(body).encode()


def same_times(got, wanted):
    """True when both lists hold the same kinds in the same order at the same times (to a millisecond)."""
    if [k for k, _ in got] != [k for k, _ in wanted]:
        first = next((i for i, (a, b) in enumerate(zip(got, wanted)) if a[0] != b[0]), min(len(got), len(wanted)))
        print("first difference at", first, got[max(0, first - 3):first + 3], wanted[max(0, first - 3):first + 3])
        return False
    return all(math.isclose(a, b, abs_tol=1e-3) for (_, a), (_, b) in zip(got, wanted))


_SUFFIX = re.compile(r"-\d+$")


def test_a_month_of_outages_flaps_and_restarts_is_alerted_exactly_as_the_rules_say(tmp_path):
    rng = random.Random(SEED)
    plans = plan_silences(rng)
    restarts = plan_restarts(rng)
    reference = {n: expected_alerts(plans[n], restarts) for n in DEVICES}

    month = Month(tmp_path)
    traced = {}  # week -> (what the week left allocated, its peak), bytes

    def on_week(week):
        """Trace the first week and the fourth, each from its own start (tracing costs time; the month's other
        weeks run untraced). A leak shows as what a week leaves behind, and as a peak that grows."""
        gc.collect()
        if week in (1, 4):
            traced[week] = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        if week == 3:
            tracemalloc.start()

    started = time.monotonic()
    gc.collect()
    tracemalloc.start()
    try:
        month.run(plans, restarts, on_week=on_week)
    finally:
        tracemalloc.stop()
    month.service.stop()
    elapsed = time.monotonic() - started

    silences = [s for n in DEVICES for s in plans[n]]
    long_ = [s for s in silences if s[1] > MAX_SILENCE_S]
    print(f"\nsimulated {DAYS} days, {len(DEVICES)} devices: {len(silences)} silences ({len(long_)} longer than "
          f"max_silence_s), {len(restarts)} restarts, in {elapsed:.1f} s")

    # Every DOWN and UP the monitor stored, at the right time, with the right length and cause.
    from appliance.monitor.store import Store
    store = Store(f"{month.config.data_dir}/monitor.sqlite3")
    try:
        events = list(reversed(store.events(limit=10**7)))
        delivered = Counter(d["event_id"] for d in store.deliveries() if d["status"] == "sent")
        undelivered = [d for d in store.deliveries() if d["status"] != "sent"]
    finally:
        store.close()
    assert not undelivered, undelivered[:5]
    for name in DEVICES:
        alerts, due = reference[name]
        stored = [e for e in events if e.device == name and e.kind.value in ("down", "reminder", "up")]
        assert same_times([(e.kind.value, e.at - START.wall) for e in stored], [(k, t) for k, t, _ in due]), name
        for e, (kind, t, (last, length, cause)) in zip(stored, due):
            assert math.isclose(e.outage_started_at, START.wall + last, abs_tol=1e-3)
            if kind != "up":
                assert math.isclose(e.outage_s, t - last, abs_tol=1e-3), (name, e)
            else:
                assert math.isclose(e.outage_s, length, abs_tol=1e-3), (name, e)
                assert e.cause == cause, (name, e, cause)
        # Which of them went out, and the FLAPPING and STEADY alerts, in order; nothing else.
        sent = [(e.kind.value, e.at - START.wall) for e in events if e.device == name and delivered[e.id]]
        assert all(delivered[e.id] == 1 for e in events if e.device == name and delivered[e.id])
        assert same_times(sent, [(k, t) for k, t, _ in alerts]), name

    # The e-mails: one file per alert, named for its device, kind and time; an UP says the cause and the length.
    files = sorted(month.outbox.glob("*.eml"))
    wanted = Counter()
    up_by_name = {}
    for name in DEVICES:
        for kind, t, silence in reference[name][0]:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(START.wall + t))
            wanted[f"{stamp}-{name}-{kind}"] += 1
            if kind == "up":
                up_by_name[f"{stamp}-{name}-{kind}"] = silence
    got = Counter(_SUFFIX.sub("", f.stem) if f.stem.count("-") > 3 else f.stem for f in files)
    assert got == wanted
    checked = 0
    for f in files:
        silence = up_by_name.get(f.stem)
        if silence is None or wanted[f.stem] != 1:
            continue
        body = email.message_from_bytes(f.read_bytes(), policy=email.policy.default).get_content()
        assert f"Cause: {LABELS[silence[2]]}" in body, body
        assert f"Silent for: {format_duration(silence[1])}" in body, body
        checked += 1

    counts = Counter(k for n in DEVICES for k, _, _ in reference[n][0])
    stored_counts = Counter(k for n in DEVICES for k, _, _ in reference[n][1])
    folded = {k: stored_counts[k] - counts[k] for k in ("down", "reminder", "up")}
    graced = len(long_) - stored_counts["down"]
    print(f"alerts: {dict(counts)}; stored but folded into flapping episodes: {folded}; {graced} outages ended "
          f"within a restart's grace; {checked} UP e-mails read")
    for week, (left, peak) in sorted(traced.items()):
        print(f"week {week}: left {left / 1024:.0f} KiB allocated, peak {peak / 1024:.0f} KiB")

    assert len(silences) >= 2000 and min(counts[k] for k in ("flapping", "steady", "reminder")) >= 20
    assert checked >= 0.9 * counts["up"]
    # Memory flat: the fourth week's peak is about the first's, and a week leaves little behind.
    assert traced[4][1] <= traced[1][1] * (1 + PEAK_GROWTH), traced
    assert traced[4][0] <= LEFT_BEHIND_BYTES, traced
