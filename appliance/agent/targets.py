"""What a heartbeat looks like for each kind of target, and what counts as delivered.

Pure functions: ``build_request`` turns a Beat into (method, url, headers,
body) and ``judge`` turns the HTTP answer into a Result or a SendError. The
kinds are:

* ``phonehome``: POST JSON to a phonehome monitor, with the device's token.
* ``healthchecks``: GET a healthchecks.io-style ping URL; any 2xx is fine.
* ``uptime-kuma``: GET an Uptime Kuma push URL with status, msg and ping.
* ``url``: GET any URL with the epoch time appended, as the original
  ``curl http://server/raspberrypiPhoneHome?$(perl -e 'print time()')``
  crontab line did; any HTTP answer counts, since the point is the line in
  the web server's access log.
"""

import json
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from appliance import __version__
from appliance.errors import SendError

USER_AGENT = f"phonehome/{__version__}"
_SNIPPET_CHARS = 120


@dataclass(frozen=True)
class Beat:
    """What one heartbeat to one target says.

    Times are epoch seconds (UTC). ``seq`` counts this target's sends since
    the agent started, from 1. ``send_failures`` holds failures.Window
    objects (phonehome kind only). ``previous_rtt_ms`` is the round trip of
    this target's previous successful beat, None if there was none.
    ``time`` is the clock check's summary (TimeStatus.as_payload()), or None.
    ``peers`` is what this Pi sees of the devices it watches
    (agent.peers.peers_payload()), or None when it watches none.
    """

    device: str
    sent_at: float
    seq: int
    boot_id: str
    uptime_s: float | None
    agent_started_at: float
    send_failures: tuple = ()
    previous_rtt_ms: float | None = None
    time: dict | None = None
    peers: list | None = None


@dataclass(frozen=True)
class Result:
    """A delivered heartbeat: the HTTP status, the round trip in ms, and (phonehome kind)
    the monitor's epoch time when it received the beat, for estimating the Pi's clock offset."""

    status: int
    rtt_ms: float
    received_at: float | None = None


def build_request(target, beat):
    """The request for ``beat`` to ``target``: (method, url, headers dict, body bytes or None)."""
    headers = {"User-Agent": USER_AGENT}
    if target.kind == "phonehome":
        headers.update({"Authorization": f"Bearer {target.token}", "Content-Type": "application/json",
                        "Accept": "application/json"})
        # Compact: on metered mobile data every byte of every beat is paid for (bench.wire).
        return "POST", target.url, headers, json.dumps(phonehome_payload(beat), separators=(",", ":")).encode("utf-8")
    if target.kind == "healthchecks":
        return "GET", target.url, headers, None
    if target.kind == "uptime-kuma":
        return "GET", uptime_kuma_url(target.url, beat.previous_rtt_ms), headers, None
    if target.kind == "url":
        return "GET", url_with_time(target.url, beat.sent_at), headers, None
    raise ValueError(f"unknown target kind {target.kind!r}")


def phonehome_payload(beat):
    """The JSON object (a dict) a phonehome monitor receives."""
    return {
        "device": beat.device,
        "sent_at": beat.sent_at,
        "seq": beat.seq,
        "boot_id": beat.boot_id or None,  # unknown (not Linux): null, which the monitor accepts; "" it rejects
        "uptime_s": beat.uptime_s,
        "agent_started_at": beat.agent_started_at,
        "send_failures": [w.as_json() for w in beat.send_failures],
        "version": __version__,
        **({"time": beat.time} if beat.time is not None else {}),
        # Only from a Pi that runs a monitor inside (the peer watchdog) with devices to watch.
        **({"peers": beat.peers} if beat.peers is not None else {}),
    }


def uptime_kuma_url(url, previous_rtt_ms):
    """``url`` with status=up, msg=OK and ping=<ms, empty if None> merged into its query."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(status="up", msg="OK", ping="" if previous_rtt_ms is None else f"{previous_rtt_ms:.0f}")
    return urlunsplit(parts._replace(query=urlencode(query)))


def url_with_time(url, epoch_s):
    """``url`` with the integer epoch seconds appended the way the original crontab line did.

    Ends with '?', '&' or '=': the digits go right after; has a query: '&'
    and the digits; otherwise '?' and the digits.
    """
    digits = str(int(epoch_s))
    if url.endswith(("?", "&", "=")):
        return url + digits
    if urlsplit(url).query:
        return f"{url}&{digits}"
    return f"{url}?{digits}"


def judge(target, response):
    """The Result of a delivered heartbeat; raises SendError saying why an answer means "not delivered"."""
    rtt_ms = response.elapsed_s * 1000.0
    if target.kind == "phonehome":
        return _judge_phonehome(target, response, rtt_ms)
    if target.kind == "uptime-kuma":
        return _judge_uptime_kuma(target, response, rtt_ms)
    if target.kind == "url":
        return Result(status=response.status, rtt_ms=rtt_ms)
    if 200 <= response.status < 300:
        return Result(status=response.status, rtt_ms=rtt_ms)
    raise SendError(_http_error(target, response, _snippet(response.body)))


def _judge_phonehome(target, response, rtt_ms):
    answer = _json(response.body)
    if response.status == 401:
        raise SendError(f"the monitor at {_host(target)} rejected the token (HTTP 401): check that this device's "
                        f"token is the same in the agent's [[heartbeat.targets]] and the monitor's "
                        f"[[monitor.devices]]")
    if response.status != 200:
        error = answer.get("error") if isinstance(answer, dict) else None
        raise SendError(_http_error(target, response, _one_line(str(error)) if error else ""))
    received_at = answer.get("received_at") if isinstance(answer, dict) else None
    if isinstance(received_at, bool) or not isinstance(received_at, (int, float)):
        raise SendError(f"{_host(target)} answered HTTP 200 without phonehome's JSON (no 'received_at'); "
                        f"check that the URL is a phonehome monitor's heartbeat URL")
    return Result(status=200, rtt_ms=rtt_ms, received_at=float(received_at))


def _judge_uptime_kuma(target, response, rtt_ms):
    answer = _json(response.body)
    ok = answer.get("ok") if isinstance(answer, dict) else None
    if ok is False:
        msg = _one_line(str(answer.get("msg", "")))
        raise SendError(f"{_host(target)} refused the push (HTTP {response.status}): {msg!r}; "
                        f"check the push URL in Uptime Kuma")
    if response.status != 200:
        raise SendError(_http_error(target, response, _snippet(response.body)))
    if ok is not True:
        raise SendError(f"{_host(target)} answered HTTP 200 without {{\"ok\": true}}; "
                        f"check that the URL is an Uptime Kuma push URL")
    return Result(status=200, rtt_ms=rtt_ms)


def _http_error(target, response, detail):
    message = f"HTTP {response.status} from {_host(target)}"
    if 300 <= response.status < 400:
        location = response.headers.get("location", "")
        where = f" to {location}" if location else ""
        return f"{message}: a redirect{where}, not followed; put the final URL in the config"
    return f"{message}: {detail}" if detail else message


def _host(target):
    # The host, like transport's messages, rather than the label: the log line
    # around the message already names the target by its label.
    return urlsplit(target.url).hostname or target.url


def _json(body):
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def _snippet(body):
    text = _one_line(body.decode("utf-8", errors="replace"))
    return "" if text.startswith("<") else text  # an HTML error page says nothing useful in one line


def _one_line(text):
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET_CHARS else text[:_SNIPPET_CHARS - 1] + "…"
