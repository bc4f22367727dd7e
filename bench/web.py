"""The dashboard's costs: time to first byte, page weight, and the appliance's CPU per page load.

A real appliance in a child process (``--serve-child``): an AgentRole with
two heartbeat targets on a loopback HTTP server, a monitor inside watching
two devices, the emulator display (its frame file in /dev/shm when there is
one), and the web page served by the real waitress server (web.server.
HttpServer) on 127.0.0.1. Two states are measured: "fresh" (just started:
one beat, one clock check) and "full" (the round-trip history filled with
24 h of a beat a minute per target and the offset history with 7 days of
5-minute points: the largest the charts' JSON gets).

Each repetition is one first visit, in the order a browser asks: the
dashboard's HTML on a new connection (TTFB counts from before the connect
to the end of the response headers), then on that same kept-alive
connection the two stylesheets, the two scripts, the OLED picture and the
charts' JSON, one after another (a browser would fetch some in parallel:
the load time is an upper bound). A repeat visit revalidates the static
files (If-None-Match: 304) and fetches the rest again. Bytes are the
bodies, and on the wire with the response headers. The child's CPU
(user + system, /proc) is read before and after all repetitions.

    python -m bench.web [--repetitions 100]

Measures and prints; asserts nothing. The client runs on the same machine,
so on a Pi the figures include its share of the CPU.
"""

import argparse
import http.client
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.common import ROOT, describe_machine, free_port, machine, ms, save_results, summary, table

PASSWORD = "correct horse battery"
STATIC = ("/static/style.css", "/static/vendor/uplot/uPlot.min.css", "/static/vendor/uplot/uPlot.iife.min.js",
          "/static/dashboard.js")
DYNAMIC = ("/display.png", "/api/v1/history")
# What an open dashboard tab asks for in a minute (dashboard.js): the facts every 15 s, the picture every 3 s,
# the charts' data once.
PER_MINUTE = {"/": 4, "/display.png": 20, "/api/v1/history": 1}
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the appliance (child process) -----------------------------------------------------------------------

class _Ping(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    do_POST = do_GET

    def log_message(self, *args):
        pass


def serve_child(directory, port, state):
    """Run the appliance and its page on 127.0.0.1:``port`` until stdin closes; print "ready" when it serves."""
    from appliance.agent.role import AgentRole
    from appliance.clock import Now
    from appliance.config import load_config
    from appliance.setup import claim, load_setup
    from web import create_agent_app
    from web.server import HttpServer

    ping = ThreadingHTTPServer(("127.0.0.1", 0), _Ping)
    threading.Thread(target=ping.serve_forever, daemon=True).start()
    monitor_port = free_port()
    config_path = os.path.join(directory, "phonehome.toml")
    data_dir = os.path.join(directory, "data")
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(f"""data_dir = "{data_dir}"
[device]
name = "home"
[heartbeat]
interval_s = 3600
timeout_s = 2
[[heartbeat.targets]]
kind = "url"
url = "http://127.0.0.1:{ping.server_address[1]}/ping"
name = "healthchecks"
[[heartbeat.targets]]
url = "http://127.0.0.1:{monitor_port}/api/v1/heartbeat"
token = "home-token-0123456789"
name = "monitor"
[monitor]
listen = "127.0.0.1:{monitor_port}"
[[monitor.devices]]
name = "home"
token = "home-token-0123456789"
[[monitor.devices]]
name = "garage"
token = "garage-token-0123456789"
[time]
servers = []
[web]
listen = ""
[display]
driver = "emulator"
emulator_file = "{os.path.join(directory, 'oled.png')}"
""")
    role = AgentRole(load_config(config_path), config_path=config_path).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (any(s.state == "unknown" for s in role.sender.status())
                                           or role.time.status.checked_at is None):
        time.sleep(0.02)
    claim(data_dir, load_setup(data_dir).code, PASSWORD)
    if state == "full":
        now = time.time()
        rand = random.Random(1)
        for worker in role.sender.workers:
            for i in range(24 * 60):
                worker.history.succeeded(now - 86400 + 60 * i, 30 + 20 * math.sin(i / 90) + 10 * rand.random())
        for i in range(7 * 288):
            role.time.history.add(Now(0.0, now - 7 * 86400 + 300 * i), 5 * math.sin(i / 40) + rand.random(), "ok")
    server = HttpServer(create_agent_app(role), f"127.0.0.1:{port}").start()
    print("ready", flush=True)
    sys.stdin.read()  # the parent closes it to stop us
    server.stop()
    role.stop()
    ping.shutdown()


class Appliance:
    """The child process; a context manager. ``cpu_s()`` is its user + system CPU so far."""

    def __init__(self, state):
        self.state = state
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
        self._log = open(os.path.join(self._dir.name, "appliance.log"), "w+b")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.web", "--serve-child", self._dir.name,
                                      str(self.port), state], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self._log.seek(0)
            output = self._log.read().decode(errors="replace")
            self.close()
            raise RuntimeError(f"the appliance did not start (said {line!r}):\n{output[-3000:]}")

    def cpu_s(self):
        with open(f"/proc/{self.proc.pid}/stat", encoding="utf-8") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self._dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# -- the browser's side ----------------------------------------------------------------------------------

def _fetch(conn, path, headers, *, started=None):
    """GET ``path`` on ``conn``: (status, seconds to the end of the headers, body bytes, wire bytes, headers).

    Seconds count from ``started`` (a perf_counter reading) when given, else from the request.
    """
    started = time.perf_counter() if started is None else started
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    first_s = time.perf_counter() - started
    body = response.read()
    head = len(f"HTTP/1.1 {response.status} {response.reason}\r\n") + sum(
        len(k) + len(v) + 4 for k, v in response.getheaders()) + 2
    return response.status, first_s, len(body), len(body) + head, response.msg  # msg: names in any case


def log_in(port):
    """The session cookie of a browser that logged in with the password."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/login")
    response = conn.getresponse()
    page = response.read().decode()
    cookie = response.getheader("Set-Cookie").split(";")[0]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    body = f"csrf_token={token}&password={PASSWORD.replace(' ', '+')}&next=/"
    conn.request("POST", "/login", body=body, headers={"Cookie": cookie, "Content-Type":
                                                       "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 302:
        raise RuntimeError(f"logging in failed: HTTP {response.status}")
    return response.getheader("Set-Cookie").split(";")[0]


def page_load(port, cookie, *, validators=None):
    """One visit: the HTML on a new connection, then every resource on it, in turn.

    ``validators`` ({path: ETag}) makes it a repeat visit. Returns {"ttfb_s"
    (connect included), "load_s", "bytes", "wire_bytes", "by_path": {path:
    [status, bytes, wire bytes, seconds to headers]}, "etags"}.
    """
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    status, ttfb_s, size, wire, _ = _fetch(conn, "/", {"Cookie": cookie}, started=started)
    by_path = {"/": [status, size, wire, ttfb_s]}
    etags = {}
    for path in STATIC + DYNAMIC:
        headers = {"Cookie": cookie}
        if validators and path in validators:
            headers["If-None-Match"] = validators[path]
        status, first_s, size, wire, response_headers = _fetch(conn, path, headers)
        by_path[path] = [status, size, wire, first_s]
        if response_headers.get("ETag"):
            etags[path] = response_headers.get("ETag")
    load_s = time.perf_counter() - started
    conn.close()
    return {"ttfb_s": ttfb_s, "load_s": load_s, "bytes": sum(v[1] for v in by_path.values()),
            "wire_bytes": sum(v[2] for v in by_path.values()), "by_path": by_path, "etags": etags}


def measure(state, repetitions):
    """First and repeat visits of the dashboard of an appliance in ``state`` ("fresh" or "full")."""
    with Appliance(state) as appliance:
        cookie = log_in(appliance.port)
        warm = page_load(appliance.port, cookie)  # imports, template compilation, first render of each page
        problems = sorted({f"{path}: HTTP {v[0]}" for path, v in warm["by_path"].items() if v[0] != 200})
        results = {}
        for visit in ("first", "repeat"):
            validators = warm["etags"] if visit == "repeat" else None
            cpu_before = appliance.cpu_s()
            loads = [page_load(appliance.port, cookie, validators=validators) for _ in range(repetitions)]
            cpu_s = appliance.cpu_s() - cpu_before
            results[visit] = {
                "ttfb_s": summary([x["ttfb_s"] for x in loads]),
                "load_s": summary([x["load_s"] for x in loads]),
                "bytes": loads[-1]["bytes"], "wire_bytes": loads[-1]["wire_bytes"],
                "by_path": loads[-1]["by_path"], "cpu_s_per_load": cpu_s / repetitions,
            }
        sizes = {path: v[2] for path, v in results["first"]["by_path"].items()}
        results["tab_wire_bytes_per_minute"] = sum(sizes[path] * n for path, n in PER_MINUTE.items())
        results["problems"] = problems
        return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=100, help="page loads per kind of visit (default 100)")
    parser.add_argument("--serve-child", nargs=3, metavar=("DIR", "PORT", "STATE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_child:
        directory, port, state = args.serve_child
        serve_child(directory, int(port), state)
        return None
    m = machine()
    print(f"# dashboard benchmark\n{describe_machine(m)}\n")
    results = {state: measure(state, args.repetitions) for state in ("fresh", "full")}
    rows = []
    for state, r in results.items():
        for visit in ("first", "repeat"):
            v = r[visit]
            rows.append([f"{state}, {visit} visit", v["ttfb_s"]["n"],
                         f"{v['ttfb_s']['p50'] * 1000:.1f} / {v['ttfb_s']['p99'] * 1000:.1f} ms",
                         f"{v['load_s']['p50'] * 1000:.1f} / {v['load_s']['p99'] * 1000:.1f} ms",
                         f"{v['bytes'] / 1024:.1f} KiB", f"{v['wire_bytes'] / 1024:.1f} KiB",
                         f"{v['cpu_s_per_load'] * 1000:.1f} ms"])
    print(f"the dashboard over loopback from waitress, {args.repetitions} page loads per row "
          "(TTFB: new connection to the HTML's headers; load: HTML then 6 resources in turn on it):")
    print(table(["appliance, visit", "n", "TTFB p50 / p99", "load p50 / p99", "bodies", "on the wire",
                 "appliance CPU / load"], rows))
    for state, r in results.items():
        print(f"\n{state}: each resource on a first visit, and on a repeat visit")
        first, repeat = r["first"]["by_path"], r["repeat"]["by_path"]
        print(table(["path", "status", "bytes", "to headers (last load)", "repeat status", "repeat bytes"], [
            [path, v[0], f"{v[1]:,}", f"{v[3] * 1000:.1f} ms", repeat[path][0], f"{repeat[path][1]:,}"]
            for path, v in first.items()]))
        print(f"an open tab (facts every 15 s, picture every 3 s, charts every 60 s): "
              f"{r['tab_wire_bytes_per_minute'] / 1024:.1f} KiB a minute on the wire")
        if r["problems"]:
            print("PROBLEMS: " + "; ".join(r["problems"]))
    path = save_results("web", {"machine": m, "repetitions": args.repetitions, "results": results})
    print(f"results: {os.path.relpath(path)}")
    return results


def summary_rows(results):
    """Rows [figure, samples, measured, goal, met?] for ``python -m bench``'s summary table."""
    rows = []
    for state in ("fresh", "full"):
        v = results[state]["first"]
        rows.append([f"dashboard first visit, {state} history", f"{v['ttfb_s']['n']} loads",
                     f"TTFB p50 {ms(v['ttfb_s']['p50'])} ms, p99 {ms(v['ttfb_s']['p99'])} ms; "
                     f"{v['wire_bytes'] / 1024:.0f} KiB", "none set", "-"])
    return rows


if __name__ == "__main__":
    main()
