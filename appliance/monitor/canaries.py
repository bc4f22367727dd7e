"""The monitor's canaries: a few well-known URLs it fetches to learn whether it can itself reach the Internet.

A probe asks the canaries one after another and stops at the first that
answers: any HTTP status counts (a 404 or a 503 still proves the way out
and back). Each request is bounded, DNS included (``agent.transport.send``:
names resolved afresh, a watchdog on the socket, no retries, no redirects
followed), so a probe of N canaries ends within N × ``timeout_s``. Only the
last result is kept.
"""

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from appliance.agent.transport import Resolver, send
from appliance.errors import SendError

TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Probe:
    """One probe: ``ok`` when a canary answered (``url`` and ``status`` say which and how), else the
    ``problems`` of each; ``elapsed_s`` the whole probe."""

    ok: bool
    url: str | None = None
    status: int | None = None
    problems: tuple = ()
    elapsed_s: float = 0.0

    def describe(self):
        """One line for the log and the devices page."""
        if self.ok:
            return f"canary {_host(self.url)} answered (HTTP {self.status})"
        if not self.problems:
            return "no canary configured"
        return "no canary answered: " + "; ".join(self.problems)


class CanaryProber:
    """Fetches ``urls`` (http:// or https://) until one answers; ``timeout_s`` bounds each request."""

    def __init__(self, urls, *, timeout_s=TIMEOUT_S, resolver=None, ca_file=None):
        self.urls = tuple(urls)
        self.timeout_s = timeout_s
        self._resolver = resolver or Resolver()
        self._ca_file = ca_file

    def probe(self):
        """Ask the canaries in turn; return a Probe. Never raises for a network problem."""
        started = time.monotonic()
        problems = []
        for url in self.urls:
            try:
                answer = send("GET", url, headers={"User-Agent": "phonehome-monitor canary"},
                              timeout_s=self.timeout_s, resolver=self._resolver, ca_file=self._ca_file)
            except SendError as exc:
                problems.append(f"{_host(url)}: {exc}")
                continue
            return Probe(True, url, answer.status, tuple(problems), time.monotonic() - started)
        return Probe(False, None, None, tuple(problems), time.monotonic() - started)


def _host(url):
    """The URL's host and port only: a canary URL may carry a path people need not see in every log line."""
    parts = urlsplit(url or "")
    return parts.netloc.rpartition("@")[2] or url
