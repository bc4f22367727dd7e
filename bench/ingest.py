"""Sustained heartbeats per second a real ``phonehome monitor`` takes over loopback, at 10,000 and 100,000 devices.

Each device has its own token; the load generator (Debian's ``wrk`` with a
Lua script, or, only when wrk is missing, Python processes) rotates over all
of them, so every request is a valid heartbeat of some device. The monitor
writes the last heartbeats to SQLite behind, once a second, as in service.

Steps, for each size, against one monitor process:

1. memory: the monitor's VmRSS idle with no device registered (a separate
   short run) and idle with every device registered, before any heartbeat;
2. first-seen pass: one heartbeat for each device (each one stores a
   FIRST_SEEN event in its own SQLite transaction); reported apart;
3. sustained: ``wrk -t1 -c32 -d15s --latency``, three times back to back
   (the machine may be shared: the median is the headline, and the CPU other
   processes used meanwhile is shown), all devices known; counts
   every answer's status in Lua and the monitor's accepted beats from
   /metrics (``phonehome_heartbeats_received_total``) before and after, so
   the monitor has also served a full /metrics scrape between runs;
4. memory per device: (VmRSS after the load - VmRSS with no device) /
   devices: everything the devices cost once each has been heard and kept
   its last heartbeat, the scrapes included (the goal is < 2 KB);
5. persistence: the devices the monitor holds in memory, then SIGTERM, then
   the devices with ``last_heard_at`` in ``devices`` of monitor.sqlite3,
   against the devices wrk sent beats for.

    python -m bench.ingest [--sizes 10000,100000] [--duration-s 15] [--repeats 3] [--connections 32] [--profile]
    python -m bench.ingest --quick      (10,000 devices, one 5 s run: about 20 s)
"""

import argparse
import json
import os
import resource
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import requests

from bench.common import (
    API_HEADERS,
    MonitorProcess,
    describe_machine,
    free_port,
    load_average,
    machine,
    machine_busy_s,
    monitor_config_text,
    results_path,
    save_results,
    table,
    utc_now_text,
)
from bench.load import python_load
from bench.profile import format_rows, py_spy, summarize
from bench.wrkscript import WRK_LUA

GOAL_PER_S = 2000
GOAL_BYTES_PER_DEVICE = 2000  # "2 KB" read as 2,000 bytes, as bench.agent reads "45 MB" as 45,000,000: the stricter reading
SIZES = (10_000, 100_000)
SETTLE_S = 1.0
SILENCE_S = 3600  # nobody goes down during the benchmark
PROFILE_RATE_HZ = 200
STARTUP_WAIT_S = 180.0  # reading 100,000 [[monitor.devices]] takes a while on a busy machine


def run(*, devices=10_000, duration_s=15, repeats=3, connections=32, threads=1, use_wrk=True, profile_s=None):
    """Run every step; return the result dict (see the module docstring).

    The sustained load runs ``repeats`` times back to back; "sustained" is
    the run with the median rate, "sustained_runs" all of them.

    With ``profile_s``, one more load phase runs while py-spy samples the
    monitor for that many seconds; its figures are not the headline ones.
    """
    wrk = shutil.which("wrk") if use_wrk else None
    with tempfile.TemporaryDirectory(prefix="phonehome-bench-ingest-") as tmp:
        empty_rss_kib, empty_startup_s = _idle_monitor(tmp, [])
        fleet = [(f"dev-{i:05d}", secrets.token_hex(16)) for i in range(devices)]
        config_devices = [(name, token, SILENCE_S, 0) for name, token in fleet]
        port, config = _write_config(tmp, "monitor", config_devices)
        data_file = os.path.join(tmp, "devices.txt")
        with open(data_file, "w", encoding="utf-8") as f:
            f.writelines(f"{name} {token}\n" for name, token in fleet)
        script = os.path.join(tmp, "heartbeats.lua")
        with open(script, "w", encoding="utf-8") as f:
            f.write(WRK_LUA)
        how = "wrk" if wrk else ("python (wrk not found)" if use_wrk else "python (asked for with --python-load)")
        result = {"devices_registered": devices, "load_generator": how,
                  "rss_kib_idle_no_devices": empty_rss_kib, "startup_s_no_devices": empty_startup_s}
        sent = set()
        with MonitorProcess(config, port, log_path=os.path.join(tmp, "monitor.log")) as monitor:
            result["startup_s"] = monitor.start(ready_within_s=STARTUP_WAIT_S)
            time.sleep(SETTLE_S)
            result["rss_kib_idle_registered"] = monitor.rss_kib()
            result["monitor_threads"] = monitor.threads()
            url = monitor.base_url + "/api/v1/heartbeat"

            def load(**kw):
                before_total, before_cpu = monitor.received_total(), monitor.cpu_split_s()
                before_switches = monitor.context_switches()
                children = resource.getrusage(resource.RUSAGE_CHILDREN)
                busy_before, load_before = machine_busy_s(), load_average()
                if wrk:
                    out = _wrk(wrk, script, url, data_file, threads=threads, connections=connections, **kw)
                else:
                    out = python_load(monitor.port, fleet, **kw)
                after_cpu, after_switches = monitor.cpu_split_s(), monitor.context_switches()
                after_total = monitor.received_total()
                after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
                busy = machine_busy_s() - busy_before
                out["monitor_user_s"] = after_cpu[0] - before_cpu[0]
                out["monitor_system_s"] = after_cpu[1] - before_cpu[1]
                out["monitor_cpu_s"] = out["monitor_user_s"] + out["monitor_system_s"]
                out["monitor_context_switches"] = after_switches - before_switches
                out["loadgen_cpu_s"] = (after_children.ru_utime + after_children.ru_stime
                                        - children.ru_utime - children.ru_stime) if wrk else out.get("loadgen_cpu_s")
                out["accepted"] = after_total - before_total
                # Whatever else ran on this machine meanwhile (other jobs share these CPUs).
                out["others_cpu_s"] = max(0.0, busy - out["monitor_cpu_s"] - (out["loadgen_cpu_s"] or 0.0))
                out["load_average_before"] = load_before
                sent.update(out.pop("sent_names", None) or _sent_indices(out, fleet))
                return out

            result["first_seen_pass"] = load(duration_s=max(120, devices // 200), stop_after=devices)
            runs = [load(duration_s=duration_s) for _ in range(repeats)]
            result["sustained_runs"] = runs
            result["sustained"] = sorted(runs, key=lambda x: x["requests_per_s"])[len(runs) // 2]  # the median
            if profile_s:
                result["profiled"] = _profiled(monitor, load, profile_s)
            result["rss_kib_after_load"] = monitor.rss_kib()
            memory = {d["name"]: d["last_heard_at"] for d in
                      requests.get(monitor.base_url + "/api/v1/devices", headers=API_HEADERS,
                                   timeout=60).json()["devices"]}
            exit_code, stop_s = monitor.stop(timeout_s=60)
            result["monitor_exit_code"], result["monitor_stop_s"] = exit_code, stop_s
            result["monitor_log_tail"] = monitor.log_tail(10) if exit_code != 0 else ""
            result["monitor_log"] = _log_counts(monitor.log_path)
        stored = _stored(os.path.join(tmp, "data-monitor", "monitor.sqlite3"))
    heard = {n for n, at in memory.items() if at is not None}
    result["persistence"] = {
        "devices_sent_beats": len(sent),
        "devices_heard_in_memory": len(heard),
        "devices_with_last_heard_at_in_db": len(stored),
        "db_matches_memory": sum(1 for n in heard if stored.get(n) == memory[n]),
        "sent_but_not_in_db": len(sent - set(stored)),
    }
    result["rss_bytes_per_device_idle"] = (result["rss_kib_idle_registered"] - empty_rss_kib) * 1024 / devices
    result["rss_bytes_per_device"] = (result["rss_kib_after_load"] - empty_rss_kib) * 1024 / devices
    return result


def hear_all_once(port, fleet, workdir):
    """One heartbeat for each of ``fleet`` [(name, token)] to the monitor on 127.0.0.1:``port``, by wrk (or
    Python processes without it); return the load figures (see ``_wrk``). Files go into ``workdir``."""
    wrk = shutil.which("wrk")
    if not wrk:
        return python_load(port, fleet, duration_s=max(120, len(fleet) // 200), stop_after=len(fleet))
    data_file = os.path.join(workdir, "hear-once-devices.txt")
    with open(data_file, "w", encoding="utf-8") as f:
        f.writelines(f"{name} {token}\n" for name, token in fleet)
    script = os.path.join(workdir, "hear-once.lua")
    with open(script, "w", encoding="utf-8") as f:
        f.write(WRK_LUA)
    return _wrk(wrk, script, f"http://127.0.0.1:{port}/api/v1/heartbeat", data_file, threads=1, connections=32,
                duration_s=max(120, len(fleet) // 200), stop_after=len(fleet))


def _write_config(tmp, name, devices):
    port = free_port()
    path = os.path.join(tmp, f"{name}.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(monitor_config_text(port=port, data_dir=os.path.join(tmp, f"data-{name}"), devices=devices))
    return port, path


def _idle_monitor(tmp, devices):
    """(VmRSS in KiB, startup seconds) of a monitor with ``devices`` registered, idle after start."""
    port, config = _write_config(tmp, f"idle-{len(devices)}", devices)
    with MonitorProcess(config, port, log_path=os.path.join(tmp, f"idle-{len(devices)}.log")) as monitor:
        startup_s = monitor.start(ready_within_s=STARTUP_WAIT_S)
        time.sleep(SETTLE_S)
        return monitor.rss_kib(), startup_s


def _wrk(wrk, script, url, data_file, *, threads, connections, duration_s, stop_after=None):
    """Run wrk once; return its figures (our Lua done() line) and its text output.

    With ``stop_after``, wrk is ended with SIGINT (it still reports) as soon
    as every thread has had its share of that many answers.
    """
    flags = tempfile.mkdtemp(prefix="wrk-flags-")
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--timeout", "10s", "--latency",
           "-s", script, url, "--", data_file, str(stop_after or 0), str(threads), os.path.join(flags, "done-")]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if stop_after:
                while proc.poll() is None and len(os.listdir(flags)) < threads:
                    time.sleep(0.02)
                proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=duration_s + 60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(flags, ignore_errors=True)
    figures = None
    for line in stdout.splitlines():
        if line.startswith("BENCH-JSON "):
            figures = json.loads(line[len("BENCH-JSON "):])
    if proc.returncode != 0 or figures is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {stderr.strip() or stdout.strip()}")
    seconds = figures["duration_us"] / 1e6
    totals = {k: sum(t[k] for t in figures["threads"]) for k in ("issued", "s200", "s4xx", "s5xx", "sother")}
    lat = figures["latency_us"]
    return {
        "command": " ".join(["wrk"] + cmd[1:8] + ["heartbeats.lua", "URL"]), "duration_s": seconds,
        "requests": figures["requests"],
        "requests_per_s": figures["requests"] / seconds, "status_200": totals["s200"],
        "non_200": totals["s4xx"] + totals["s5xx"] + totals["sother"], "socket_errors": figures["errors"],
        "latency_ms": {k: v / 1000 for k, v in lat.items()}, "threads": figures["threads"],
        "wrk_output": stdout,
    }


def _profiled(monitor, load, profile_s, *, rate_hz=PROFILE_RATE_HZ):
    """Load the monitor while py-spy records it (``--gil``); return the summary and the speedscope path."""
    out = {}
    loader = threading.Thread(target=lambda: out.update(load(duration_s=profile_s + 4)), name="profiled-load")
    loader.start()
    time.sleep(1.5)  # into the steady state before sampling
    path = results_path("ingest-profile", ".speedscope.json")
    before = monitor.received_total()
    started = time.monotonic()
    spy = subprocess.run([py_spy(), "record", "--pid", str(monitor.pid), "--gil", "--rate", str(rate_hz),
                          "--duration", str(profile_s), "--format", "speedscope", "--output", path],
                         capture_output=True, text=True, timeout=profile_s + 60, check=False)
    window_s = time.monotonic() - started
    accepted = monitor.received_total() - before
    loader.join()
    if spy.returncode != 0 or not os.path.exists(path):
        return {"error": f"py-spy failed ({spy.returncode}): {spy.stderr.strip()[-500:]}"}
    return {"speedscope": path, "rate_hz": rate_hz, "window_s": window_s, "accepted": accepted,
            "accepted_per_s": accepted / window_s, "load": out,
            "rows": summarize(path, rate_hz=rate_hz, accepted=accepted)}


def _sent_indices(out, fleet):
    """Names of the devices wrk's request() produced a heartbeat for (each thread rotates from ``first``)."""
    names = set()
    for t in out.get("threads", []):
        for j in range(min(t["issued"], len(fleet))):
            names.add(fleet[(t["first"] + j) % len(fleet)][0])
    return names


def _log_counts(path):
    """{"lines", "waitress_queue_warnings", "errors"} of the monitor's log."""
    counts = {"lines": 0, "waitress_queue_warnings": 0, "errors": 0}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            counts["lines"] += 1
            counts["waitress_queue_warnings"] += "Task queue depth" in line
            counts["errors"] += " ERROR " in line
    return counts


def _stored(path):
    """{name: last_heard_at} of the devices with a last_heard_at in the store."""
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT name, last_heard_at FROM devices WHERE last_heard_at IS NOT NULL"))
    finally:
        db.close()


def report(r):
    """The printed table of one run."""
    rows = []
    phases = [("first-seen pass (each beat stores an event)", r["first_seen_pass"])]
    n = len(r["sustained_runs"])
    phases += [(f"sustained, run {i + 1}/{n} (all devices known)" + (" <- median" if x is r["sustained"] else ""), x)
               for i, x in enumerate(r["sustained_runs"])]
    for label, x in phases:
        lat = x["latency_ms"]
        errors = x["socket_errors"]
        rows.append([label, f"{x['duration_s']:.1f}", f"{x['requests']:,}", f"{x['requests_per_s']:,.0f}",
                     f"{x['accepted'] / x['duration_s']:,.0f}", f"{lat['p50']:.1f}", f"{lat['p99']:.1f}",
                     f"{lat['max']:.1f}", x["non_200"], sum(errors.values()) if isinstance(errors, dict) else errors,
                     f"{x['monitor_cpu_s'] / x['duration_s']:.2f}",
                     "-" if x["loadgen_cpu_s"] is None else f"{x['loadgen_cpu_s'] / x['duration_s']:.2f}",
                     f"{x['others_cpu_s'] / x['duration_s']:.2f}"])
    s = r["sustained"]
    p = r["persistence"]
    rate = s["requests_per_s"]
    mib = 1 / 1024
    lines = [
        (f"== {r['devices_registered']:,} devices registered, each its own token; load: {r['load_generator']} "
        f"({s.get('command', 'python processes')}), rotating over every device"),
        table(["phase", "s", "requests", "req/s", "accepted/s", "p50 ms", "p99 ms", "max ms", "non-200",
               "sock err", "monitor cores", "loadgen cores", "others' cores"], rows),
        ("   accepted = phonehome_heartbeats_received_total delta from /metrics (it also counts the requests "
        "in flight when wrk stopped); cores = CPU seconds / wall seconds; others' = every other process on "
        "this machine meanwhile (/proc/stat, steal included)"),
        (f"   monitor RSS: {r['rss_kib_idle_no_devices'] * mib:.1f} MiB idle with no device; "
        f"{r['rss_kib_idle_registered'] * mib:.1f} MiB idle with {r['devices_registered']:,} registered "
        f"({r['rss_bytes_per_device_idle']:,.0f} bytes per device); {r['rss_kib_after_load'] * mib:.1f} MiB after "
        f"the load, every device heard and {2 * (len(r['sustained_runs']) + 1)} /metrics scrapes served: "
        f"{r['rss_bytes_per_device']:,.0f} bytes per registered device (goal < {GOAL_BYTES_PER_DEVICE:,}: "
        f"{'MET' if r['rss_bytes_per_device'] < GOAL_BYTES_PER_DEVICE else 'NOT MET'})"),
        (f"   monitor startup (until HTTP answers): {r['startup_s_no_devices']:.1f} s with no device, "
        f"{r['startup_s']:.1f} s with {r['devices_registered']:,}; SIGTERM to exit: {r['monitor_stop_s']:.1f} s, "
        f"exit code {r['monitor_exit_code']}"),
        (f"   persistence: {p['devices_sent_beats']:,} devices sent beats, {p['devices_heard_in_memory']:,} heard "
        f"in memory, {p['devices_with_last_heard_at_in_db']:,} with last_heard_at in SQLite after SIGTERM "
        f"({p['db_matches_memory']:,} equal to the in-memory time; {p['sent_but_not_in_db']} sent but missing)"),
        (f"   monitor CPU per accepted heartbeat (sustained): {s['monitor_cpu_s'] / s['accepted'] * 1e6:,.0f} us "
        f"(user {s['monitor_user_s'] / s['accepted'] * 1e6:,.0f} us, system "
        f"{s['monitor_system_s'] / s['accepted'] * 1e6:,.0f} us), "
        f"{s['monitor_context_switches'] / s['accepted']:.1f} context switches"),
        (f"   monitor log: {r['monitor_log']['lines']:,} lines, {r['monitor_log']['waitress_queue_warnings']:,} of "
        f"them waitress 'Task queue depth' warnings, {r['monitor_log']['errors']} ERROR lines"),
        (f"   goal: >= {GOAL_PER_S:,} heartbeats/s sustained on this machine (median of {n} runs): "
        f"{'MET' if rate >= GOAL_PER_S and s['non_200'] == 0 else 'NOT MET'} ({rate:,.0f}/s, {s['non_200']} non-200)"),
    ]
    prof = r.get("profiled")
    if prof and "error" in prof:
        lines.append(f"   profile: {prof['error']}")
    elif prof:
        lines += [(f"\n   profile: py-spy --gil at {prof['rate_hz']} Hz for {prof['window_s']:.0f} s under the same load "
                  f"({prof['accepted_per_s']:,.0f} accepted/s while sampled); saved "
                  f"{os.path.relpath(prof['speedscope'])} (open in https://www.speedscope.app)"),
                  format_rows(prof["rows"])]
    return "\n".join(lines)


def marginal_bytes_per_device(results):
    """Bytes of RSS after the load per device added between the smallest and the largest size, or None.

    Unlike the per-size figure this leaves out what does not grow with the
    devices (SQLite's page cache, HTTP buffers, the scrape's buffers), which
    weighs more at 10,000 devices than at 100,000.
    """
    if len(results) < 2:
        return None
    small, large = min(results, key=lambda r: r["devices_registered"]), max(results,
                                                                             key=lambda r: r["devices_registered"])
    added = large["devices_registered"] - small["devices_registered"]
    return (large["rss_kib_after_load"] - small["rss_kib_after_load"]) * 1024 / added if added else None


def summary_rows(result):
    """Rows [figure, samples, measured, goal, met] for the overall summary table, two per size."""
    rows = []
    for r in result["sizes"]:
        s = r["sustained"]
        n = f"{r['devices_registered']:,}"
        rows.append([f"ingest, {n} devices registered", f"{len(r['sustained_runs'])} x {s['duration_s']:.0f} s",
                     (f"{s['requests_per_s']:,.0f} heartbeats/s, p50 {s['latency_ms']['p50']:.1f} ms, "
                      f"p99 {s['latency_ms']['p99']:.1f} ms, {s['non_200']} non-200"),
                     f">= {GOAL_PER_S:,}/s (median run)",
                     "met" if s["requests_per_s"] >= GOAL_PER_S and s["non_200"] == 0 else "NOT met"])
        rows.append([f"monitor memory per device, {n} registered", "1 process",
                     (f"{r['rss_bytes_per_device']:,.0f} bytes (RSS after the load - RSS with no device; "
                      f"{r['rss_bytes_per_device_idle']:,.0f} before any heartbeat)"),
                     f"< {GOAL_BYTES_PER_DEVICE:,} bytes",
                     "met" if r["rss_bytes_per_device"] < GOAL_BYTES_PER_DEVICE else "NOT met"])
    marginal = result.get("marginal_bytes_per_device")
    if marginal is not None:
        sizes = sorted(r["devices_registered"] for r in result["sizes"])
        rows.append([f"monitor memory per added device, {sizes[0]:,} -> {sizes[-1]:,}", "2 processes",
                     f"{marginal:,.0f} bytes (difference of the RSS after the load / devices added)",
                     f"< {GOAL_BYTES_PER_DEVICE:,} bytes", "met" if marginal < GOAL_BYTES_PER_DEVICE else "NOT met"])
    return rows


def main(argv=None):
    """Run the benchmark at every size; print it; return {"sizes": [result per size], "machine": ...}."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(str(n) for n in SIZES),
                        help="registered device counts, comma-separated (default 10000,100000)")
    parser.add_argument("--devices", type=int, default=None, help="one size only (same as --sizes N)")
    parser.add_argument("--duration-s", type=int, default=15, help="seconds per sustained run (default 15)")
    parser.add_argument("--repeats", type=int, default=3, help="sustained runs, back to back (default 3)")
    parser.add_argument("--quick", action="store_true", help="10,000 devices, one 5 s run (about 20 s)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator even with wrk")
    parser.add_argument("--profile", action="store_true",
                        help="then load it again while py-spy samples it (pip install py-spy) and show where time goes")
    parser.add_argument("--profile-s", type=int, default=10, help="seconds py-spy samples for (default 10)")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    if args.devices:
        sizes = [args.devices]
    if args.quick:
        sizes, args.duration_s, args.repeats = [10_000], 5, 1
    m = machine()
    print("phonehome bench: heartbeat ingest (real monitor process, loopback, write-behind to SQLite)")
    print(f"machine: {describe_machine(m)}; the load generator runs on the same CPUs")
    if args.profile and not py_spy():
        print("py-spy not found (.venv/bin/pip install py-spy): running without the profile")
    if not args.python_load and not shutil.which("wrk"):
        print("wrk not found (apt-get install wrk): falling back to Python load processes, which compete with "
              "the monitor for the same CPUs, so the figure reads low")
    results = []
    for devices in sizes:
        result = run(devices=devices, duration_s=args.duration_s, repeats=args.repeats,
                     connections=args.connections, threads=args.threads, use_wrk=not args.python_load,
                     profile_s=args.profile_s if args.profile and py_spy() else None)
        results.append(result)
        print()
        print(report(result))
        sys.stdout.flush()
    out = {"bench": "ingest", "at": utc_now_text(), "machine": m, "goal_per_s": GOAL_PER_S,
           "goal_bytes_per_device": GOAL_BYTES_PER_DEVICE, "sizes": results,
           "marginal_bytes_per_device": marginal_bytes_per_device(results)}
    path = save_results("ingest", out)
    print()
    print(table(["figure", "samples", "measured", "goal", "met?"], summary_rows(out)))
    print(f"\nsaved {os.path.relpath(path)}")
    sys.stdout.flush()
    return out


if __name__ == "__main__":
    main()
