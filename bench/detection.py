"""Detection and restore latency of a real ``phonehome monitor``, alerts to a real SMTP sink.

Per outage, for one device: a few heartbeats, then silence.

- detection latency = (DOWN e-mail accepted by the sink)
  - (the last heartbeat's 200 answer + max_silence_s)
- restore latency = (UP e-mail accepted by the sink) - (the one heartbeat
  sent after the DOWN e-mail, taken just before it is written to the socket)

Both ends are stamped in this process on one monotonic clock. The monitor's
own stored events split each latency in two (wall clock, same machine):
how late the state change was made, and how long the alert took from the
event to the sink.

Runs at 1 device registered (its outages one after another), at 1,000 and
at 100,000 registered. With more than one device, ``outages`` devices each
have one outage, started ``stagger_s`` apart so that several overlap; any
alert about another device is counted as unexpected.

- 1,000: the other 960 devices are kept alive by a separate process posting
  heartbeats at a steady rate (each every 2.5 s; their max_silence_s is 10 s).
- 100,000: keeping 99,960 devices alive needs 40,000 beats/s at the same
  cadence, which this machine cannot make. So the other devices have
  max_silence_s 3,600 s and are each heard once before the outages (wrk,
  as in bench.ingest), and a separate process keeps up the same 400
  heartbeats/s as in the 1,000 run, rotating over them: the monitor holds
  100,000 devices UP with 100,000 deadlines pending, and takes a steady
  stream of heartbeats, while the outages run; no background device is due
  during the run.

bench/common.py's monitor config sets flap_threshold = 0: the 1-device run
repeats outages of one device on purpose, and a flapping summary would hold
those alerts back (the flapping rules have their own tests).

    python -m bench.detection [--devices 1,1000,100000] [--outages N] [--quick]
"""

import argparse
import math
import os
import secrets
import sqlite3
import sys
import tempfile
import threading
import time

from bench.common import (
    MonitorProcess,
    describe_machine,
    free_port,
    machine,
    machine_busy_s,
    monitor_config_text,
    ms,
    save_results,
    summary,
    table,
    utc_now_text,
)
from bench.ingest import hear_all_once
from bench.load import HeartbeatClient, keep_alive, spawn_context
from bench.sink import SmtpSink

GOAL_S = 1.0
MAX_SILENCE_S = 1.0
BEATS_PER_OUTAGE = 3
BEAT_INTERVAL_S = 0.1
PAUSE_BEFORE_RESTORE_S = 0.1
ALERT_WAIT_S = 10.0  # give up on one alert after this long (counted as missing, not as a latency)
BACKGROUND_SILENCE_S = 10.0
BACKGROUND_ROUND_S = 2.5  # each background device beats this often
HEARD_ONCE_ABOVE = 10_000  # with more devices than this, the background is heard once (see the docstring)
HEARD_ONCE_SILENCE_S = 3600.0
HEARD_ONCE_RATE_PER_S = 400.0  # the 1,000 run's background rate: 960 devices / 2.5 s, rounded
SIZES = (1, 1_000, 100_000)
STARTUP_WAIT_S = 180.0


def run(*, devices, outages, stagger_s=0.15, background_round_s=BACKGROUND_ROUND_S):
    """Measure ``outages`` outages with ``devices`` devices registered; return the run's result dict."""
    subjects = 1 if devices == 1 else min(outages, devices)
    rounds = math.ceil(outages / subjects)
    names = [f"subject-{i:03d}" for i in range(subjects)]
    fleet = [(name, secrets.token_hex(16), MAX_SILENCE_S, 0) for name in names]
    heard_once = devices > HEARD_ONCE_ABOVE
    silence_s = HEARD_ONCE_SILENCE_S if heard_once else BACKGROUND_SILENCE_S
    background = [(f"bg-{i:06d}", secrets.token_hex(16), silence_s, 0) for i in range(devices - subjects)]
    rate_per_s = HEARD_ONCE_RATE_PER_S if heard_once else len(background) / background_round_s
    first_pass = None
    with tempfile.TemporaryDirectory(prefix="phonehome-bench-detection-") as tmp, SmtpSink() as sink:
        port = free_port()
        config = os.path.join(tmp, "monitor.toml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(monitor_config_text(port=port, data_dir=os.path.join(tmp, "data"), devices=fleet + background,
                                        smtp_port=sink.port))
        with MonitorProcess(config, port, log_path=os.path.join(tmp, "monitor.log")) as monitor:
            startup_s = monitor.start(ready_within_s=STARTUP_WAIT_S)
            if heard_once:
                first_pass = hear_all_once(port, [(n, t) for n, t, _, _ in background], tmp)
            keeper = _Keeper(port, background, rate_per_s) if background else None
            if keeper:
                keeper.start()
                # Steady state: every background device seen once (by the keeper, or already by the first pass).
                time.sleep(1.0 if heard_once else background_round_s + 0.5)
            time.sleep(max(0.0, MAX_SILENCE_S - startup_s))  # past the monitor's startup grace
            cpu_before, wall_before, machine_before = monitor.cpu_s(), time.monotonic(), machine_busy_s()
            samples = _outages(port, sink.handler, fleet, rounds, stagger_s, outages)
            busy_s = time.monotonic() - wall_before
            cpu_s = monitor.cpu_s() - cpu_before
            machine_s = machine_busy_s() - machine_before
            rss_kib = monitor.rss_kib()
            keeper_counts = keeper.stop() if keeper else None
            exit_code, _ = monitor.stop()
            events = _stored_events(os.path.join(tmp, "data", "monitor.sqlite3"))
            log_tail = monitor.log_tail(10) if exit_code != 0 else ""
        unexpected = [a.device for a in sink.handler.arrivals if not a.device.startswith("subject-")]
    _split_by_events(samples, events)
    return {
        "devices_registered": devices,
        "devices_with_outages": subjects,
        "outages_planned": outages,
        "outages_per_device": rounds,
        "stagger_s": stagger_s if subjects > 1 else None,
        "max_silence_s": MAX_SILENCE_S,
        "beats_per_outage": BEATS_PER_OUTAGE,
        "beat_interval_s": BEAT_INTERVAL_S,
        "background": None if not background else {
            "devices": len(background), "max_silence_s": silence_s, "heard_once": heard_once,
            "first_pass": None if first_pass is None else {
                k: first_pass.get(k) for k in ("duration_s", "requests", "requests_per_s", "non_200")},
            "rate_per_s_planned": rate_per_s, **keeper_counts},
        "monitor_startup_s": startup_s,
        "monitor_cpu_s_during_outages": cpu_s,
        "machine_busy_s_during_outages": machine_s,
        "outage_phase_s": busy_s,
        "monitor_rss_kib": rss_kib,
        "monitor_exit_code": exit_code,
        "monitor_log_tail": log_tail,
        "unexpected_alerts": len(unexpected),
        "missing_down": sum(1 for s in samples if s.get("detection_s") is None),
        "missing_up": sum(1 for s in samples if s.get("restore_s") is None),
        "detection_s": summary([s["detection_s"] for s in samples if s.get("detection_s") is not None]),
        "restore_s": summary([s["restore_s"] for s in samples if s.get("restore_s") is not None]),
        "down_event_late_s": summary([s["down_event_late_s"] for s in samples if "down_event_late_s" in s]),
        "down_alert_s": summary([s["down_alert_s"] for s in samples if "down_alert_s" in s]),
        "up_event_after_send_s": summary([s["up_event_after_send_s"] for s in samples if "up_event_after_send_s" in s]),
        "up_alert_s": summary([s["up_alert_s"] for s in samples if "up_alert_s" in s]),
        "samples": samples,
    }


class _Keeper:
    """The background devices' heartbeats, from a separate process so they cost this process nothing."""

    def __init__(self, port, devices, rate_per_s):
        ctx = spawn_context()
        self._stop = ctx.Event()
        self._results = ctx.Queue()
        pairs = [(name, token) for name, token, _, _ in devices]
        self._proc = ctx.Process(target=keep_alive, args=(port, pairs, rate_per_s, self._stop, self._results),
                                 daemon=True)

    def start(self):
        self._proc.start()

    def stop(self):
        self._stop.set()
        counts = self._results.get(timeout=30)
        self._proc.join(timeout=10)
        counts["rate_per_s"] = counts["sent"] / counts["duration_s"] if counts["duration_s"] else None
        return counts


def _outages(port, sink, fleet, rounds, stagger_s, wanted):
    """Run every subject device's outages in its own thread, starts staggered; return the samples."""
    samples, lock = [], threading.Lock()
    start = time.monotonic() + 0.1
    threads = []
    for i, (name, token, _, _) in enumerate(fleet):
        t = threading.Thread(target=_device_outages, name=f"outages-{name}",
                             args=(port, sink, name, token, rounds, start + i * stagger_s, samples, lock))
        threads.append(t)
        t.start()
    for t in threads:
        t.join()
    samples.sort(key=lambda s: s["started_mono"])
    return samples[:wanted]


def _device_outages(port, sink, name, token, rounds, start_at, samples, lock):
    client = HeartbeatClient(port)
    seq = 0
    time.sleep(max(0.0, start_at - time.monotonic()))
    try:
        for r in range(rounds):
            s = {"device": name, "round": r, "started_mono": time.monotonic()}
            for k in range(BEATS_PER_OUTAGE):
                if k:
                    time.sleep(BEAT_INTERVAL_S)
                seq += 1
                status, sent, answered = client.send(name, token, seq)
                s["last_beat_status"], s["last_beat_rtt_s"] = status, answered - sent
            s["last_beat_wall"] = time.time()
            down = sink.wait_for(name, "down", after_mono=answered, timeout_s=MAX_SILENCE_S + ALERT_WAIT_S)
            if down is not None:
                s["detection_s"] = down.mono - (answered + MAX_SILENCE_S)
                s["down_wall"] = down.wall
            time.sleep(PAUSE_BEFORE_RESTORE_S)
            seq += 1
            restore_wall = time.time()
            status, sent, answered = client.send(name, token, seq)
            s["restore_status"], s["restore_sent_wall"] = status, restore_wall
            up = sink.wait_for(name, "up", after_mono=sent, timeout_s=ALERT_WAIT_S)
            if up is not None:
                s["restore_s"] = up.mono - sent
                s["up_wall"] = up.wall
            with lock:
                samples.append(s)
    except OSError as exc:  # the monitor went away: keep what was measured, say what happened
        with lock:
            samples.append({"device": name, "started_mono": time.monotonic(), "error": str(exc)})
    finally:
        client.close()


def _stored_events(path):
    """[(device, kind, at, last_heard_at)] of the DOWN and UP events the monitor stored, in order."""
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT device, kind, at, last_heard_at FROM events WHERE kind IN ('down', 'up') "
                          "ORDER BY id").fetchall()
    finally:
        db.close()


def _split_by_events(samples, events):
    """Add, per sample, how late the monitor made the change and how long its alert took (wall clock)."""
    by_device = {}
    for device, kind, at, heard in events:
        by_device.setdefault((device, kind), []).append((at, heard))
    for s in samples:
        if "down_wall" in s:
            found = [e for e in by_device.get((s["device"], "down"), []) if e[0] <= s["down_wall"]]
            if found:
                at, heard = found[-1]
                s["down_event_late_s"] = at - (heard + MAX_SILENCE_S)
                s["down_alert_s"] = s["down_wall"] - at
        if "up_wall" in s:
            found = [e for e in by_device.get((s["device"], "up"), []) if e[0] <= s["up_wall"]]
            if found:
                at, _ = found[-1]
                s["up_event_after_send_s"] = at - s["restore_sent_wall"]
                s["up_alert_s"] = s["up_wall"] - at


def report(result):
    """The printed table of one run."""
    r = result
    bg = r["background"]
    if bg and bg.get("heard_once"):
        fp = bg["first_pass"]
        load = (f"{bg['devices']:,} other devices with max_silence_s {bg['max_silence_s']:g}, each heard once "
                f"before the outages ({fp['requests']:,} beats in {fp['duration_s']:.0f} s, {fp['non_200']} "
                f"non-200), then {bg['rate_per_s']:.0f} heartbeats/s from a separate process rotating over "
                f"them ({bg['ok']} answered 200, {bg['not_ok']} not, {bg['errors']} errors): too many to keep "
                f"alive at the 1,000 run's cadence on this machine, so none of them is due during the run")
    elif bg:
        load = (f"{bg['devices']} other devices kept alive by a separate process at {bg['rate_per_s']:.0f} "
                f"heartbeats/s (each every {bg['devices'] / bg['rate_per_s']:.1f} s, max_silence_s "
                f"{bg['max_silence_s']:g}; {bg['ok']} answered 200, {bg['not_ok']} not, {bg['errors']} errors)")
    if bg:
        shape = (f"{r['devices_with_outages']} devices x {r['outages_per_device']} outage, starts "
                 f"{r['stagger_s']:g} s apart (overlapping)")
    else:
        load = "no other devices"
        shape = f"1 device x {r['outages_per_device']} outages, one after another"
    rows = []

    def cpu(seconds):
        return f"{seconds / r['outage_phase_s']:.2f}"

    def row(label, s):
        rows.append([label, s["n"], ms(s["p50"]), ms(s["p99"]), ms(s["max"])])

    row("detection latency", r["detection_s"])
    row("  of which: deadline -> DOWN event stored", r["down_event_late_s"])
    row("  of which: DOWN event -> e-mail accepted", r["down_alert_s"])
    row("restore latency", r["restore_s"])
    row("  of which: beat sent -> UP event stored", r["up_event_after_send_s"])
    row("  of which: UP event -> e-mail accepted", r["up_alert_s"])
    worst = max(r["detection_s"]["max"], r["restore_s"]["max"]) \
        if r["detection_s"]["n"] and r["restore_s"]["n"] else None
    met = worst is not None and worst < GOAL_S and not r["missing_down"] and not r["missing_up"]
    lines = [
        (f"== {r['devices_registered']:,} device(s) registered: {shape}; max_silence_s {r['max_silence_s']:g}; "
        f"{r['beats_per_outage']} beats {r['beat_interval_s']:g} s apart before each outage"),
        f"   load: {load}",
        table(["latency (ms)", "n", "p50", "p99", "max"], rows),
        (f"   missing alerts: {r['missing_down']} DOWN, {r['missing_up']} UP (waited {ALERT_WAIT_S:g} s); "
        f"unexpected alerts: {r['unexpected_alerts']}; monitor exit code {r['monitor_exit_code']}; "
        f"RSS {r['monitor_rss_kib'] / 1024:.0f} MiB"),
        (f"   during the {r['outage_phase_s']:.1f} s of outages: monitor {cpu(r['monitor_cpu_s_during_outages'])} "
        f"cores, every other process (this bench, its senders and whatever else runs here) "
        f"{cpu(max(0.0, r['machine_busy_s_during_outages'] - r['monitor_cpu_s_during_outages']))} cores"),
        (f"   goal: detection and restore under {GOAL_S * 1000:.0f} ms at p100 (max): "
        f"{'MET' if met else 'NOT MET'}"),
    ]
    return "\n".join(lines)


def summary_rows(result):
    """Rows [figure, samples, measured, goal, met] for the overall summary table, two per size."""
    rows = []
    for r in result["runs"]:
        for label, key, missing in (("detection latency", "detection_s", "missing_down"),
                                    ("restore latency", "restore_s", "missing_up")):
            s = r[key]
            met = s["max"] is not None and s["max"] < GOAL_S and not r[missing]
            rows.append([f"{label}, {r['devices_registered']:,} device(s) registered",
                         f"{s['n']} outages" + (f" ({r[missing]} alerts missing)" if r[missing] else ""),
                         f"p50 {ms(s['p50'])} ms, p99 {ms(s['p99'])} ms, max {ms(s['max'])} ms",
                         f"< {GOAL_S * 1000:.0f} ms at p100", "met" if met else "NOT met"])
    return rows


def main(argv=None):
    """Run at every size; print each; return {"runs": [result per size], "machine": ...}."""
    parser = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default=",".join(str(n) for n in SIZES),
                        help="registered device counts to run at (default 1,1000,100000)")
    parser.add_argument("--outages", type=int, default=None,
                        help="outages per run (default 20 at 1 device, 40 with more devices)")
    parser.add_argument("--stagger-s", type=float, default=0.15, help="seconds between outage starts")
    parser.add_argument("--quick", action="store_true", help="1 and 1,000 devices, 10 outages each (about 30 s)")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.devices.split(",")]
    if args.quick:
        sizes, args.outages = [1, 1000], args.outages or 10
    m = machine()
    print("phonehome bench: detection and restore latency (real monitor process, real SMTP sink, 127.0.0.1)")
    print(f"machine: {describe_machine(m)}")
    print("detection = DOWN e-mail accepted - (last beat's 200 answer + max_silence_s); restore = UP e-mail "
          "accepted - restore beat sent; percentiles are nearest-rank (p99 of < 100 samples is the max)")
    runs = []
    for devices in sizes:
        outages = args.outages or (20 if devices == 1 else 40)
        result = run(devices=devices, outages=outages, stagger_s=args.stagger_s)
        runs.append(result)
        print()
        print(report(result))
        sys.stdout.flush()
    out = {"bench": "detection", "at": utc_now_text(), "machine": m, "goal_s": GOAL_S, "runs": runs}
    path = save_results("detection", out)
    print()
    print(table(["figure", "samples", "measured", "goal", "met?"], summary_rows(out)))
    print(f"\nsaved {os.path.relpath(path)}")
    return out


if __name__ == "__main__":
    main()
