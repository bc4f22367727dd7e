"""Where a heartbeat's time goes in the monitor, layer by layer.

Two views, because each alone misleads:

- layer costs, measured in this process on one thread with no sockets: the
  Python cost of each layer the heartbeat passes (intake parse, the
  service's receive, the whole Flask app for one WSGI call, the write-behind
  flush per beat). Exact, but leaves out waitress, the kernel and threads.
- under load (``--under-load``): the real monitor process with 10,000
  devices under wrk, sampled by py-spy with ``--gil`` (only the thread
  holding the GIL is recorded, so the samples show where the one core that
  Python can use goes), grouped by layer and turned into microseconds per
  accepted heartbeat. The speedscope file is saved under bench/results/.

    python -m bench.profile [--under-load]
"""

import argparse
import io
import json
import os
import secrets
import sys
import tempfile
import time

from bench.common import describe_machine, machine, monitor_config_text, table

BEATS_PER_FLUSH = 2300  # about one second's worth at the measured ingest rate


def layer_costs(*, devices=10_000, calls=20_000):
    """{layer: microseconds per call} measured in-process (see the module docstring)."""
    from werkzeug.test import EnvironBuilder

    from appliance.config import parse_config
    from appliance.monitor.intake import parse_heartbeat
    from appliance.monitor.service import MonitorService
    from web import create_monitor_app

    fleet = [(f"dev-{i:05d}", secrets.token_hex(16)) for i in range(devices)]
    with tempfile.TemporaryDirectory(prefix="phonehome-bench-layers-") as tmp:
        config = parse_config(monitor_config_text(port=8081, data_dir=tmp,
                                                  devices=[(n, t, 3600, 0) for n, t in fleet]))
        service = MonitorService(config, channels=[])  # not started: no threads, flush called here
        beats = [(json.dumps({"device": n, "sent_at": time.time(), "seq": 1, "boot_id": "bench-boot",
                              "uptime_s": 1.0}).encode(), f"Bearer {t}") for n, t in fleet]
        for body, auth in beats:  # every device known and up, as in the sustained load
            service.receive(body, "application/json", auth)
        service.flush()
        app = create_monitor_app(service)
        environs = [(EnvironBuilder(path="/api/v1/heartbeat", method="POST", data=body, headers={
            "Authorization": auth, "Content-Type": "application/json", "Host": "127.0.0.1:8081"}).get_environ(),
            body) for body, auth in beats[:1000]]

        def wsgi_call(i):
            environ, body = environs[i % len(environs)]
            environ = dict(environ, **{"wsgi.input": io.BytesIO(body)})
            for _ in app(environ, lambda status, headers, exc_info=None: None):
                pass

        n = len(beats)
        out = {
            "intake.parse_heartbeat (JSON parse + validation)":
                _per_call_us(lambda i: parse_heartbeat(beats[i % n][0], "application/json", received_at=1.0), calls),
            "MonitorService.receive (parse + token + state machine)":
                _per_call_us(lambda i: service.receive(beats[i % n][0], "application/json", beats[i % n][1]), calls),
            "Flask app, one WSGI call (Flask + Werkzeug + receive + jsonify)": _per_call_us(wsgi_call, calls),
        }
        service.flush()
        for body, auth in beats[:BEATS_PER_FLUSH]:
            service.receive(body, "application/json", auth)
        started = time.perf_counter()
        service.flush()
        flush_s = time.perf_counter() - started
        out[f"flush of {BEATS_PER_FLUSH:,} beats (under the service lock), per beat"] = flush_s / BEATS_PER_FLUSH * 1e6
        out[f"flush of {BEATS_PER_FLUSH:,} beats, whole batch (receive waits meanwhile)"] = flush_s * 1e6
        service.store.close()
    return out


def _per_call_us(fn, calls):
    for i in range(min(1000, calls)):  # warm up
        fn(i)
    started = time.perf_counter()
    for i in range(calls):
        fn(i)
    return (time.perf_counter() - started) / calls * 1e6


# -- a py-spy profile of the real process ------------------------------

_INCLUSIVE = (  # (label, frame name, file fragment); a sample counts once per row if any frame matches
    ("waitress main thread: socket I/O, HTTP parsing, queueing", "BaseWSGIServer.run", "waitress/"),
    ("waitress task threads, total", "ThreadedTaskDispatcher.handler_thread", "waitress/"),
    ("  Flask app (Flask.__call__)", "Flask.__call__", "flask/"),
    ("    request context push/pop + routing", "RequestContext.", "flask/"),
    ("    our view: heartbeat()", "heartbeat", "web/monitor_api.py"),
    ("      MonitorService.receive", "MonitorService.receive", "appliance/monitor/service.py"),
    ("        intake.parse_heartbeat", "parse_heartbeat", "appliance/monitor/intake.py"),
    ("      jsonify (JSON answer + Response)", "jsonify", "flask/"),
    ("  logging (waitress 'Task queue depth' warnings)", "Logger._log", "logging/"),
    ("scheduler thread: deadlines + write-behind flush", "MonitorService._run", "appliance/monitor/service.py"),
    ("  of which Store.save_heartbeats", "Store.save_heartbeats", "appliance/monitor/store.py"),
)


def summarize(speedscope_path, *, rate_hz, accepted):
    """Rows (label, samples, % of samples, microseconds per accepted heartbeat) from a py-spy speedscope file.

    Each sample stands for 1/``rate_hz`` s of GIL-holding time; ``accepted``
    is the number of heartbeats the monitor accepted while it was recorded.
    """
    with open(speedscope_path, encoding="utf-8") as f:
        data = json.load(f)
    frames = data["shared"]["frames"]
    stacks = [s for p in data["profiles"] for s in p["samples"]]
    total = len(stacks)
    rows = [["all GIL-holding samples", total, 100.0, total / rate_hz / max(accepted, 1) * 1e6]]
    for label, name, fragment in _INCLUSIVE:
        wanted = {i for i, fr in enumerate(frames) if fragment in (fr.get("file") or "")
                  and (fr["name"] == name or (name.endswith(".") and fr["name"].startswith(name)))}
        hits = sum(1 for s in stacks if wanted.intersection(s))
        rows.append([label, hits, 100.0 * hits / max(total, 1), hits / rate_hz / max(accepted, 1) * 1e6])
    return rows


def format_rows(rows):
    return table(["where (py-spy --gil samples, inclusive)", "samples", "%", "us/heartbeat"],
                 [[label, n, f"{pct:.1f}", f"{us:.0f}"] for label, n, pct, us in rows])


def py_spy():
    """The py-spy executable (PATH or next to this Python), or None."""
    import shutil

    found = shutil.which("py-spy")
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return found or (beside if os.path.exists(beside) else None)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    parser.add_argument("--under-load", action="store_true",
                        help="also profile a real monitor under wrk with py-spy (about a minute)")
    args = parser.parse_args(argv)
    m = machine()
    print("phonehome bench: where a heartbeat's time goes")
    print(f"machine: {describe_machine(m)}")
    costs = layer_costs()
    print("\n== layer costs in-process (one thread, no sockets, 10,000 devices registered, all up)")
    print(table(["layer", "us per call"], [[k, f"{v:,.1f}"] for k, v in costs.items()]))
    if args.under_load:
        from bench import ingest

        if not py_spy():
            print("\npy-spy not found: .venv/bin/pip install py-spy")
            return costs
        ingest.main(["--sizes", "10000", "--duration-s", "10", "--repeats", "1", "--profile"])
    return costs


if __name__ == "__main__":
    main()
