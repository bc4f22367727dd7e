"""Alert delivery: one worker per channel, retries with back-off, nothing lost.

Deliveries are rows in the store, queued in the same transaction as the event
they announce. A worker sends them in order, marks each sent or schedules a
retry, and gives up only after ``alerts.give_up_after_s`` (or at once when the
channel says retrying cannot help). A failing channel never blocks the other
channels or the state machine: each has its own thread.

Delivery is at least once: if the monitor dies after the SMTP server accepted
a message but before the row was marked sent, that message is sent again after
restart (at most twice in all).
"""

import logging
import random
import threading

from appliance.alerts.messages import compose
from appliance.errors import DeliveryError

log = logging.getLogger("phonehome.alerts")


def retry_delay_s(attempts, *, first_s, max_s, rand):
    """Seconds before retry number ``attempts`` (1 = the first retry): doubling, capped, jittered."""
    return min(max_s, first_s * 2 ** (attempts - 1)) * (0.5 + rand() / 2)


class Dispatcher:
    """Sends queued alert deliveries through the channels in force."""

    def __init__(self, store, channels, *, clock, give_up_after_s, retry_first_s=10.0, retry_max_s=600.0,
                 rand=random.random):
        self._store = store
        self._clock = clock
        self._give_up_after_s = give_up_after_s
        self._retry = dict(first_s=retry_first_s, max_s=retry_max_s, rand=rand)
        self._channels = {c.name: c for c in channels}
        self._failing = set()
        self._stopping = threading.Event()
        self._wakeups = {}
        self._threads = {}
        self._lock = threading.Lock()

    @property
    def channel_names(self):
        return list(self._channels)

    def configure(self, channels, *, give_up_after_s):
        """Use a new set of channels (after a config reload); deliveries already queued stay."""
        with self._lock:
            self._channels = {c.name: c for c in channels}
            self._give_up_after_s = give_up_after_s
            if self._threads:
                self._start_missing()
        self.wake()

    def tick(self, name, now):
        """Send what is due on channel ``name``; return seconds until it next has work (None: idle)."""
        channel = self._channels.get(name)
        if channel is None:
            return None
        for delivery in self._store.due_deliveries(name, now.wall):
            if not self._send(channel, delivery, now):
                break  # keep the order: later alerts wait behind a failing one
        next_at = self._store.next_delivery_at(name)
        return None if next_at is None else max(0.0, next_at - now.wall)

    def _send(self, channel, delivery, now):
        event = self._store.event(delivery.event_id)
        message = compose(event)
        try:
            channel.send(message)
        except DeliveryError as exc:
            return self._failed(channel, delivery, event, now, exc)
        self._store.delivered(delivery.id, now.wall)
        if channel.name in self._failing:
            self._failing.discard(channel.name)
            log.info("alert channel %s works again", channel.name)
        log.info("alert sent via %s: %s", channel.name, message.subject)
        return True

    def _failed(self, channel, delivery, event, now, exc):
        attempts = delivery.attempts + 1
        age = now.wall - delivery.created_at
        if not exc.retryable or age >= self._give_up_after_s:
            why = "retrying cannot help" if not exc.retryable else f"undelivered for {age:.0f} s"
            log.error("alert via %s given up (%s) for %s %s: %s", channel.name, why, event.kind.value.upper(),
                      event.device, exc)
            self._store.given_up(delivery.id, now.wall, str(exc))
            return True  # the next alert may go through
        delay = retry_delay_s(attempts, **self._retry)
        self._store.retry_later(delivery.id, now.wall + delay, str(exc))
        if channel.name not in self._failing:
            self._failing.add(channel.name)
            log.warning("alert channel %s failing: %s; retrying with back-off, giving up after %.0f s",
                        channel.name, exc, self._give_up_after_s)
        return False

    # -- threads -------------------------------------------------------

    def start(self):
        with self._lock:
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
            t.join(timeout=5)
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
            # Capped so a wall-clock step cannot postpone a retry for long.
            wakeup.wait(5.0 if delay is None else min(delay, 5.0))
