"""How fast the monitor's pages answer with 10,000 devices registered.

A MonitorService on a real SQLite file in a temporary directory, served by
the real waitress HttpServer (4 threads, as ``phonehome monitor`` runs it)
on 127.0.0.1, and a logged-in ``requests`` session with keep-alive. The
fleet: 80 % up, 10 % down (one outage each, still open), 10 % never seen,
100 with alerts paused; one device has ``--outages`` closed outages in its
history. The service's threads are not started: its clock is shifted by hand
to bring the down devices down, so nothing changes while the pages are timed.

Timed, ``--repeats`` times each after 5 warm-up requests, one after
another: the device list's first page, a middle page, the down filter, a
name search, the busy device's page, and, for comparison, the JSON list of
all devices (which the pages do not use). Each time is from just before the
request to the last byte of the answer, in this process. In-process, the
service's ``device_list`` alone (the sort and the page's dicts) is timed too.

    python -m bench.monitor_pages [--devices 10000] [--repeats 200] [--outages 200]
"""

import argparse
import json
import re
import tempfile
import time

import requests

from appliance.clock import Now
from bench.common import (
    API_HEADERS,
    describe_machine,
    free_port,
    machine,
    monitor_config_text,
    ms,
    save_results,
    summary,
    table,
    utc_now_text,
)

PASSWORD = "bench password 123"
SILENCE_S = 300
WARMUP = 5
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class ShiftedClock:
    """The real clocks, moved on by ``shift_s`` (both of them), so the setup can make devices go silent."""

    def __init__(self):
        self.shift_s = 0.0

    def now(self):
        return Now(time.monotonic() + self.shift_s, time.time() + self.shift_s)


def build_fleet(service, clock, names, *, outages):
    """Bring the fleet into its measured state; return (up, down, new, paused, busy device) names."""
    n = len(names)
    up, down, new = names[: n * 8 // 10], names[n * 8 // 10: n * 9 // 10], names[n * 9 // 10:]
    busy = up[0]

    def beat(name):
        body = json.dumps({"device": name, "sent_at": time.time() + clock.shift_s, "seq": 1, "boot_id": "bench-boot",
                           "uptime_s": 86400.0, "time": {"verdict": "ok", "offset_ms": 3.5}}).encode()
        answer = service.receive(body, "application/json", f"Bearer {name}-token-0123456789")
        assert answer.status == 200, answer.body

    for _ in range(outages):                      # the busy device's history: beat, silence, DOWN, back UP
        beat(busy)
        clock.shift_s += SILENCE_S + 1
        service.tick(clock.now())
    for name in up + down:
        beat(name)
    clock.shift_s += SILENCE_S + 1                # everyone silent: the "down" tenth fires below
    for name in up:
        beat(name)
    service.tick(clock.now())
    service.flush()
    paused = up[1:101]
    for name in paused:
        service.pause(name, for_s=86400)
    return up, down, new, paused, busy


def log_in(session, base_url):
    page = session.get(base_url + "/login", timeout=30)
    token = _TOKEN.search(page.text).group(1)
    answer = session.post(base_url + "/login", data={"password": PASSWORD, "csrf_token": token, "next": "/"},
                          allow_redirects=False, timeout=30)
    if answer.status_code != 302:
        raise RuntimeError(f"login failed: {answer.status_code} {answer.text[:200]}")


def time_get(session, url, repeats, *, headers=None):
    """(seconds per request, bytes of the last answer) for ``repeats`` GETs of ``url`` after WARMUP ones."""
    for _ in range(WARMUP):
        r = session.get(url, headers=headers, timeout=60)
        if r.status_code != 200:
            raise RuntimeError(f"GET {url}: {r.status_code} {r.text[:200]}")
    took = []
    size = 0
    for _ in range(repeats):
        started = time.perf_counter()
        r = session.get(url, headers=headers, timeout=60)
        size = len(r.content)  # requests has read the whole body by now
        took.append(time.perf_counter() - started)
        if r.status_code != 200:
            raise RuntimeError(f"GET {url}: {r.status_code}")
    return took, size


def time_call(fn, repeats):
    for _ in range(WARMUP):
        fn()
    took = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        took.append(time.perf_counter() - started)
    return took


def run(*, devices=10_000, repeats=200, outages=200):
    from appliance.auth import Passwords
    from appliance.config import parse_config
    from appliance.monitor.service import MonitorService
    from web import create_monitor_app
    from web.server import HttpServer

    names = [f"dev-{i:05d}" for i in range(devices)]
    with tempfile.TemporaryDirectory(prefix="phonehome-bench-pages-") as tmp:
        port = free_port()
        config = parse_config(monitor_config_text(port=port, data_dir=tmp, devices=[
            (n, f"{n}-token-0123456789", SILENCE_S, 0) for n in names]))
        clock = ShiftedClock()
        service = MonitorService(config, clock=clock, channels=[])
        server = None
        try:
            started = time.perf_counter()
            up, down, new, paused, busy = build_fleet(service, clock, names, outages=outages)
            setup_s = time.perf_counter() - started
            Passwords(tmp).set(PASSWORD)
            server = HttpServer(create_monitor_app(service), f"127.0.0.1:{port}").start()
            base = f"http://127.0.0.1:{port}"
            session = requests.Session()
            log_in(session, base)
            counts = service.device_list(limit=0).counts
            pages = max(1, -(-devices // 100))
            middle = max(1, pages // 2)
            search = "dev-04"
            found = service.device_list(query=search, limit=0).total
            targets = [
                (f"GET / (device list, page 1 of {pages})", "/", repeats),
                (f"GET /?page={middle}", f"/?page={middle}", repeats),
                (f"GET /?state=down ({counts['down']:,} match, page 1)", "/?state=down", repeats),
                (f"GET /?q={search} ({found:,} match, page 1)", f"/?q={search}", repeats),
                (f"GET /devices/{busy} ({outages} outages, 50 shown)", f"/devices/{busy}", repeats),
                ("GET /api/v1/devices (all devices as JSON, for comparison)", "/api/v1/devices",
                 max(10, repeats // 10)),
            ]
            results = []
            for label, path, n in targets:
                headers = API_HEADERS if path.startswith("/api/") else None
                took, size = time_get(session, base + path, n, headers=headers)
                results.append({"what": label, "path": path, "bytes": size, "seconds": summary(took)})
            in_process = summary(time_call(lambda: service.device_list(limit=100), repeats))
        finally:
            if server is not None:
                server.stop()
            service.stop()
    return {"devices_registered": devices, "counts": counts, "outages_of_busy_device": outages,
            "setup_s": setup_s, "repeats": repeats, "warmup": WARMUP, "server_threads": 4,
            "requests": results, "device_list_in_process_s": in_process}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.monitor_pages", description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=200, help="timed requests per page (default 200)")
    parser.add_argument("--outages", type=int, default=200, help="closed outages of the busy device (default 200)")
    args = parser.parse_args(argv)
    m = machine()
    print("phonehome bench: the monitor's pages")
    print(f"machine: {describe_machine(m)}")
    result = run(devices=args.devices, repeats=args.repeats, outages=args.outages)
    c = result["counts"]
    print(f"\n{result['devices_registered']:,} devices registered: {c['up']:,} up, {c['down']:,} down, "
          f"{c['new']:,} never seen, {c['paused']:,} with alerts paused (setup took {result['setup_s']:.1f} s); "
          f"waitress with {result['server_threads']} threads on 127.0.0.1, one logged-in client with keep-alive, "
          f"requests one after another, {WARMUP} warm-up requests first\n")
    rows = [[r["what"], r["seconds"]["n"], f"{r['bytes']:,}", ms(r["seconds"]["p50"]), ms(r["seconds"]["p99"]),
             ms(r["seconds"]["max"])] for r in result["requests"]]
    s = result["device_list_in_process_s"]
    rows.append(["MonitorService.device_list(limit=100), in-process", s["n"], "", ms(s["p50"]), ms(s["p99"]),
                 ms(s["max"])])
    print(table(["what", "n", "bytes", "p50 ms", "p99 ms", "max ms"], rows))
    path = save_results("monitor-pages", {"machine": m, "at": utc_now_text(), **result})
    print(f"\nsaved {path}")
    return result


def summary_rows(result):
    """Rows [figure, samples, measured, goal, met?] for ``python -m bench``'s summary table."""
    return [[f"monitor {r['what']}, {result['devices_registered']:,} devices", f"{r['seconds']['n']} requests",
             f"p50 {ms(r['seconds']['p50'])} ms, p99 {ms(r['seconds']['p99'])} ms", "none set", "-"]
            for r in result["requests"][:1] + result["requests"][4:5]]


if __name__ == "__main__":
    main()
