"""Alert delivery: one worker per channel, retries with back-off, nothing lost.

Deliveries are rows in the store, queued in the same transaction as the event
they announce. A worker sends them in order, marks each sent or schedules a
retry, and gives up only after ``alerts.give_up_after_s`` (or at once when the
channel says retrying cannot help). A failing channel never blocks the other
channels or the state machine: each has its own thread.

Retry times and the give-up age are kept on the monotonic clock while the
process runs, so a wall-clock step (a Pi getting NTP) neither gives an alert
up early nor postpones its retry; the wall-clock copy in the store is only for
a restart and for people.

Delivery is at least once, and at most twice: if the monitor dies after a
server accepted a message but before the row was marked sent (the few
milliseconds of that SQLite write), that one message is sent again after
the restart. Nothing else is ever sent twice: tests/faults/test_power_cuts.py
kills the sender at random moments to show it.

A disk that is full or read-only must not silence alerts. Events the store
could not take are handed over with ``send_unstored`` and sent from memory;
when the store takes them later, ``freeze_unstored`` tells it which channels
already have them, so their rows are written as sent, not sent again. A row
that cannot be marked sent is kept sent in memory and marked when the disk
takes writes again, never resent meanwhile.
"""

import logging
import random
import sqlite3
import threading

from appliance.alerts.messages import compose
from appliance.backoff import backoff_s
from appliance.errors import DeliveryError, StoreError
from appliance.timefmt import format_duration

log = logging.getLogger("phonehome.alerts")

# Long enough for an SMTP conversation that is under way to finish at a normal stop.
STOP_JOIN_S = 35.0


class Dispatcher:
    """Sends queued alert deliveries through the channels in force."""

    def __init__(self, store, channels, *, clock, give_up_after_s, retry_first_s=10.0, retry_max_s=600.0,
                 rand=random.random, ack_link=None):
        self._store = store
        # ack_link(event): the acknowledgement link for an alert about an outage, or None; it must not raise.
        self._ack_link = ack_link or (lambda event: None)
        self._clock = clock
        self._give_up_after_s = give_up_after_s
        self._retry = dict(first_s=retry_first_s, max_s=retry_max_s, rand=rand)
        self._channels = {}
        self._failing = set()
        self._seen_mono = {}   # delivery id -> (first seen mono, wall then): its age on the monotonic clock
        self._due_mono = {}    # delivery id -> monotonic time of its next try
        self._stopping = threading.Event()
        self._started = False
        self._wakeups = {}
        self._threads = {}
        self._lock = threading.Lock()
        self._unmarked = {}    # delivery id -> wall time it was sent, while its row cannot be written
        self._unstored = []    # _Unstored alerts of events the store could not take, oldest first
        self._use(channels)

    @property
    def channel_names(self):
        return list(self._channels)

    def configure(self, channels, *, give_up_after_s):
        """Use a new set of channels (after a config reload); deliveries already queued stay."""
        with self._lock:
            self._give_up_after_s = give_up_after_s
            self._use(channels)
            if self._started:
                self._start_missing()
        self.wake()

    def _use(self, channels):
        self._channels = {c.name: c for c in channels}
        if not self._channels:
            log.warning("no alert channel is configured: outages are recorded but nobody is told; "
                        "add [alerts.email], alerts.urls or alerts.outbox_dir")
        now = self._clock.now()
        dropped = self._store.abandon_deliveries(keep=list(self._channels), at=now.wall,
                                                 error="channel removed from the config")
        if dropped:
            log.warning("%d undelivered alert(s) dropped: their channel is no longer in the config", dropped)

    # -- one step, callable from tests ------------------------------------

    def tick(self, name, now):
        """Send what is due on channel ``name``; return seconds until it next has work (None: idle)."""
        channel = self._channels.get(name)
        if channel is None:
            return None
        self._mark_unmarked()
        for delivery in self._store.pending_deliveries(name):
            if delivery.id in self._unmarked:
                continue  # sent; only its row still says pending
            wait = self._wait_s(delivery, now)
            if wait > 0:
                return wait  # keep the order: later alerts wait behind one that waits for a retry
            if not self._send(channel, delivery, now):
                return self._wait_s(delivery, now)
        return self._tick_unstored(channel, now)

    def _wait_s(self, delivery, now):
        due = self._due_mono.get(delivery.id)
        if due is None:  # not tried by this process: only the stored wall time is known
            return max(0.0, delivery.next_try_at - now.wall)
        return max(0.0, due - now.mono)

    def _age_s(self, delivery, now):
        first = self._seen_mono.setdefault(delivery.id, (now.mono, now.wall))
        return max(0.0, first[1] - delivery.created_at) + (now.mono - first[0])

    def _send(self, channel, delivery, now):
        event = self._store.event(delivery.event_id)
        message = compose(event, ack_url=self._ack_link(event))
        try:
            channel.send(message)
        except DeliveryError as exc:
            return self._failed(channel, delivery, event, now, exc)
        self._mark_sent(delivery.id, now.wall)
        self._forget(delivery)
        if channel.name in self._failing:
            self._failing.discard(channel.name)
            log.info("alert channel %s works again", channel.label)
        log.info("alert sent via %s: %s", channel.label, message.subject)
        return True

    def _failed(self, channel, delivery, event, now, exc):
        age = self._age_s(delivery, now)
        if not exc.retryable or age >= self._give_up_after_s:
            why = "retrying cannot help" if not exc.retryable else f"undelivered for {format_duration(age)}"
            log.error("alert %s %s given up (%s) [%s]: %s", event.kind.value.upper(), event.device, why,
                      channel.label, exc)
            self._store.given_up(delivery.id, now.wall, str(exc))
            self._forget(delivery)
            return True  # the next alert may go through
        delay = backoff_s(delivery.attempts + 1, **self._retry)
        self._due_mono[delivery.id] = now.mono + delay
        try:
            self._store.retry_later(delivery.id, now.wall + delay, str(exc))
        except (StoreError, sqlite3.Error):
            pass  # the retry time lives in memory as well; the row is only for a restart
        if channel.name not in self._failing:
            self._failing.add(channel.name)
            log.warning("alert channel %s failing: %s; each alert is retried for %s", channel.label, exc,
                        format_duration(self._give_up_after_s))
        return False

    def _mark_sent(self, delivery_id, at):
        try:
            self._store.delivered(delivery_id, at)
        except (StoreError, sqlite3.Error) as exc:
            if not self._unmarked:
                log.error("cannot mark sent alerts in %s (%s); they are not sent again, and are marked when "
                          "the disk takes writes again", self._store.path, exc)
            self._unmarked[delivery_id] = at

    def _mark_unmarked(self):
        for delivery_id, at in list(self._unmarked.items()):
            try:
                self._store.delivered(delivery_id, at)
            except (StoreError, sqlite3.Error):
                return
            del self._unmarked[delivery_id]

    # -- alerts of events the store could not take ----------------------

    def send_unstored(self, events):
        """Send ``events`` (not stored: the disk is full or read-only) on every channel, from memory."""
        with self._lock:
            self._unstored += [_Unstored(e, set(self._channels)) for e in events]
        self.wake()

    def freeze_unstored(self):
        """Before the store takes events it could not take earlier: no new send of them starts.

        Returns ``told(event)``: the channels that have (or are sending) that
        event's alert, whose rows the store writes as sent. Follow with
        ``unstored_stored`` when the write succeeded, ``thaw_unstored`` when not.
        """
        with self._lock:
            for item in self._unstored:
                item.frozen = True
            told = {id(item.event): item.sent | item.busy for item in self._unstored}
        return lambda event: told.get(id(event), frozenset())

    def thaw_unstored(self):
        with self._lock:
            for item in self._unstored:
                item.frozen = False
        self.wake()

    def unstored_stored(self, events):
        """``events`` are in the store now with rows for the channels not yet told: stop sending them here.

        A send already under way finishes (its row says sent); if it fails it is retried from memory.
        """
        ids = {id(e) for e in events}
        with self._lock:
            for item in self._unstored:
                if id(item.event) in ids:
                    item.todo.clear()
                    item.frozen = False
                    item.stored = True
            self._unstored = [i for i in self._unstored if i.wanted]
        self.wake()

    def _tick_unstored(self, channel, now):
        """Send the unstored alerts due on ``channel``; return seconds until one is due again (None: idle)."""
        while True:
            with self._lock:
                waiting = [i for i in self._unstored if channel.name in i.todo and not i.frozen]
                due = [i for i in waiting if i.due_mono.get(channel.name, 0.0) <= now.mono]
                if not due:
                    waits = [i.due_mono[channel.name] - now.mono for i in waiting]
                    return min(waits) if waits else None
                item = due[0]
                item.todo.discard(channel.name)
                item.busy.add(channel.name)
            message = compose(item.event)
            try:
                channel.send(message)
            except DeliveryError as exc:
                self._unstored_failed(channel, item, now, exc)
                continue
            with self._lock:
                item.busy.discard(channel.name)
                item.sent.add(channel.name)
                self._unstored = [i for i in self._unstored if i.wanted]
            log.info("alert sent from memory via %s: %s", channel.label, message.subject)

    def _unstored_failed(self, channel, item, now, exc):
        item.first_mono.setdefault(channel.name, now.mono)
        age = now.mono - item.first_mono[channel.name]
        with self._lock:
            item.busy.discard(channel.name)
            if exc.retryable and age < self._give_up_after_s:
                item.attempts[channel.name] = item.attempts.get(channel.name, 0) + 1
                item.due_mono[channel.name] = now.mono + backoff_s(item.attempts[channel.name], **self._retry)
                item.todo.add(channel.name)
                return
            self._unstored = [i for i in self._unstored if i.wanted]
        log.error("alert %s %s given up [%s]: %s", item.event.kind.value.upper(), item.event.device, channel.label,
                  exc)

    def _forget(self, delivery):
        self._seen_mono.pop(delivery.id, None)
        self._due_mono.pop(delivery.id, None)

    # -- threads -------------------------------------------------------

    def start(self):
        with self._lock:
            self._started = True
            self._start_missing()

    def _start_missing(self):
        for name in self._channels:
            if name not in self._threads or not self._threads[name].is_alive():
                self._wakeups[name] = threading.Event()
                t = threading.Thread(target=self._run, args=(name,), name=f"alerts-{name}", daemon=True)
                self._threads[name] = t
                t.start()

    def wake(self):
        """New deliveries were queued: look now instead of at the next retry."""
        for event in list(self._wakeups.values()):
            event.set()

    def stop(self):
        self._stopping.set()
        self.wake()
        for t in list(self._threads.values()):
            t.join(timeout=STOP_JOIN_S)
        self._threads.clear()

    def _run(self, name):
        wakeup = self._wakeups[name]
        while not self._stopping.is_set():
            if name not in self._channels:
                return
            wakeup.clear()
            try:
                delay = self.tick(name, self._clock.now())
            except Exception:  # a bug must not silence alerts for good: log it and try again later
                log.exception("alert worker for %s failed; retrying in 30 s", name)
                delay = 30.0
            wakeup.wait(60.0 if delay is None else delay)


class _Unstored:
    """The alert of an event the store could not take, and how far each channel got with it."""

    def __init__(self, event, channels):
        self.event = event
        self.todo = channels     # channel names still to send it
        self.busy = set()        # channel names sending it now
        self.sent = set()
        self.frozen = False      # the store is taking it: start no new send
        self.due_mono = {}       # channel name -> monotonic time of its next try
        self.first_mono = {}     # channel name -> monotonic time of its first failure
        self.attempts = {}
        self.stored = False      # in the store now, with rows for the channels it had not told

    @property
    def wanted(self):
        """Kept until the store has it (to tell it which channels have it) and no send of it is left."""
        return bool(self.todo or self.busy or not self.stored)
