"""Heartbeats sent from Python: one keep-alive HTTP/1.1 connection per sender, no third-party client.

Used for the timed heartbeats of the detection benchmark, for the
background devices that keep a monitor busy, and as the ingest benchmark's
load generator when wrk is not installed (it then says so: a Python sender
on the same two cores takes CPU from the monitor and reads lower).
"""

import http.client
import json
import multiprocessing
import resource
import time

from bench.common import percentile

HEARTBEAT_PATH = "/api/v1/heartbeat"


class HeartbeatClient:
    """Posts heartbeats over one persistent connection to a monitor on 127.0.0.1:``port``.

    Reconnects once when the server closed an idle connection.
    """

    def __init__(self, port, *, timeout_s=10.0, boot_id="bench-boot"):
        self._port = port
        self._timeout_s = timeout_s
        self._boot_id = boot_id
        self._conn = None
        self._started = time.time()

    def send(self, name, token, seq):
        """Post one heartbeat; return (HTTP status, monotonic time sent, monotonic time answered).

        Raises OSError or http.client.HTTPException when the monitor cannot be reached at all.
        """
        now = time.time()
        body = json.dumps({"device": name, "sent_at": now, "seq": seq, "boot_id": self._boot_id,
                           "uptime_s": now - self._started}).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=self._timeout_s)
            sent = time.monotonic()
            try:
                self._conn.request("POST", HEARTBEAT_PATH, body=body, headers=headers)
                response = self._conn.getresponse()
                response.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()
                if attempt == 2:
                    raise
                continue
            return response.status, sent, time.monotonic()

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def keep_alive(port, devices, rate_per_s, stop, results):
    """Process target: post heartbeats for ``devices`` [(name, token)] in turn at ``rate_per_s`` until ``stop``.

    Paced against a schedule (not "sleep after each"), so a slow answer is
    caught up instead of lowering the rate. Puts {"sent", "ok", "not_ok",
    "errors", "duration_s"} on ``results`` at the end.
    """
    client = HeartbeatClient(port)
    counts = {"sent": 0, "ok": 0, "not_ok": 0, "errors": 0}
    started = time.monotonic()
    i = 0
    while not stop.is_set():
        due = started + i / rate_per_s
        wait = due - time.monotonic()
        if wait > 0:
            stop.wait(wait)
            continue
        name, token = devices[i % len(devices)]
        i += 1
        counts["sent"] += 1
        try:
            status, _, _ = client.send(name, token, i)
        except (OSError, http.client.HTTPException):
            counts["errors"] += 1
            stop.wait(0.1)
            continue
        counts["ok" if status == 200 else "not_ok"] += 1
    client.close()
    counts["duration_s"] = time.monotonic() - started
    results.put(counts)


def flood(port, devices, offset, duration_s, results, max_requests=None):
    """Process target: post heartbeats back to back, rotating over ``devices`` from ``offset``.

    Stops after ``duration_s`` or ``max_requests``. Puts {"ok", "not_ok",
    "errors", "latencies_s", "names_sent", "duration_s"} on ``results``.
    """
    client = HeartbeatClient(port)
    latencies, names_sent = [], set()
    counts = {"ok": 0, "not_ok": 0, "errors": 0}
    started = time.monotonic()
    end = started + duration_s
    i = offset
    while time.monotonic() < end and (max_requests is None or i - offset < max_requests):
        name, token = devices[i % len(devices)]
        i += 1
        names_sent.add(name)
        try:
            status, sent, answered = client.send(name, token, i)
        except (OSError, http.client.HTTPException):
            counts["errors"] += 1
            continue
        latencies.append(answered - sent)
        if status == 200:
            counts["ok"] += 1
        else:
            counts["not_ok"] += 1
    client.close()
    results.put(dict(counts, latencies_s=latencies, names_sent=sorted(names_sent),
                     duration_s=time.monotonic() - started))


def python_load(port, devices, *, duration_s, processes=4, stop_after=None):
    """Flood the monitor from ``processes`` Python processes; return figures shaped like the wrk ones.

    Each process has one connection and its own part of the rotation. With
    ``stop_after`` each process sends its share of that many heartbeats once
    (a pass over the devices) instead of running for the whole duration.
    """
    ctx = spawn_context()
    results = ctx.Queue()
    share = None if stop_after is None else -(-stop_after // processes)
    procs = [ctx.Process(target=flood, args=(port, devices, k * len(devices) // processes, duration_s, results,
                                             share), daemon=True) for k in range(processes)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for p in procs:
        p.start()
    parts = [results.get(timeout=duration_s + 120) for _ in procs]
    elapsed = max(part["duration_s"] for part in parts)  # from each sender's first request, not its start-up
    for p in procs:
        p.join(timeout=10)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    latencies = [x for part in parts for x in part["latencies_s"]]
    requests = sum(part["ok"] + part["not_ok"] for part in parts)
    lat = {"p50": percentile(latencies, 50), "p90": percentile(latencies, 90), "p99": percentile(latencies, 99),
           "max": max(latencies, default=None), "mean": sum(latencies) / len(latencies) if latencies else None}
    return {
        "command": f"{processes} Python processes, 1 keep-alive connection each", "duration_s": elapsed,
        "requests": requests, "requests_per_s": requests / elapsed, "status_200": sum(p["ok"] for p in parts),
        "non_200": sum(p["not_ok"] for p in parts), "socket_errors": sum(p["errors"] for p in parts),
        "latency_ms": {k: None if v is None else v * 1000 for k, v in lat.items()},
        "sent_names": {n for part in parts for n in part["names_sent"]},
        "loadgen_cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
    }


def spawn_context():
    """The multiprocessing context senders run in: spawn, since the bench process has threads (the SMTP sink)."""
    return multiprocessing.get_context("spawn")
