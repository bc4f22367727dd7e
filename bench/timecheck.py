"""The clock check's costs: time and CPU for one full check of 4 servers on loopback, bytes written per day.

1. one check: a real TimeChecker (default query: the agent's resolver and
   ``ntp.query_servers``; the real time-service and zone readers, which run
   chronyc, ntpq and timedatectl if installed) against 4 NTP servers on
   127.0.0.1: Debian's chronyd (``-x``, never touching the clock) and 3
   hand-built responders, or 4 responders when chronyd is missing. Wall time
   per check, this process's CPU (time.process_time) and its children's (the
   tools run: resource.RUSAGE_CHILDREN) per check; the NTP queries and the
   system readers are also timed alone.
2. disk: the checker's real history policy driven with Now values (no
   sleeping) through 8 simulated days at the default ``check_every_s`` (900 s)
   and at the after-boot cadence (30 s, a Pi that never gets a good answer),
   with the file in a temporary data_dir; the bytes the 8th day wrote, i.e.
   with a full 7-day history. Ext4 writes whole 4 KiB blocks plus a journal
   commit per fsync, so the blocks are shown too.

    python -m bench.timecheck [--checks 50]

Measures and prints; asserts nothing.
"""

import argparse
import math
import os
import resource
import tempfile
import time

from appliance.clock import Now, SystemClock
from appliance.config.schema import Time
from appliance.timecheck.checker import TimeChecker
from appliance.timecheck.history import FILE_NAME
from appliance.timecheck.loopback import CHRONYD, FakeNtpServer, LoopbackChrony
from appliance.timecheck.ntp import ServerAnswer, query_servers
from appliance.timecheck.system import SyncState, SystemReading, read_system
from bench.common import describe_machine, machine, save_results, summary, table

BLOCK_BYTES = 4096


def _children_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_checks(specs, checks):
    """Per-check wall time and CPU of a real TimeChecker asking ``specs``; also the query and readers alone."""
    checker = TimeChecker(Time(servers=tuple(specs), timeout_s=5.0), clock=SystemClock(), data_dir=None)
    checker.check_now()  # warm-up: imports, first thread start
    wall, cpu, child = [], [], []
    for _ in range(checks):
        w, c, k = time.monotonic(), time.process_time(), _children_cpu_s()
        status = checker.check_now()
        wall.append(time.monotonic() - w)
        cpu.append(time.process_time() - c)
        child.append(_children_cpu_s() - k)
    query_wall, system_wall = [], []
    for _ in range(checks):
        w = time.monotonic()
        query_servers(specs, timeout_s=5.0)
        query_wall.append(time.monotonic() - w)
        w = time.monotonic()
        read_system()
        system_wall.append(time.monotonic() - w)
    return {"status": status, "wall_s": summary(wall), "cpu_s": summary(cpu), "children_cpu_s": summary(child),
            "query_wall_s": summary(query_wall), "system_wall_s": summary(system_wall)}


def measure_disk(interval_s, *, days=8):
    """Bytes and writes the history file cost on the last simulated day, checks every ``interval_s``."""
    specs = ("a.lan", "b.lan", "c.lan", "d.lan")

    def query(servers, *, timeout_s):
        # Offsets with a little noise and an occasional spike, so 0.1 ms rounding does not flatter the file.
        n = query.calls = getattr(query, "calls", 0) + 1
        return tuple(ServerAnswer(s, "ok", "ok", address="192.0.2.1", offset_ms=0.1 * (n % 37) - 1.5
                                  + (80.0 if n % 97 == 0 else 0.0), delay_ms=12.0, stratum=2)
                     for s in servers)

    system = SystemReading(SyncState("timesyncd", True, "timesyncd: synchronised"), "Europe/Berlin")
    with tempfile.TemporaryDirectory() as data_dir:
        until_synced = interval_s if interval_s < 900 else 30.0
        checker = TimeChecker(Time(servers=specs, check_every_s=max(interval_s, until_synced),
                                   until_synced_every_s=until_synced), clock=SystemClock(), data_dir=data_dir,
                              query=query, system=lambda: system)
        now = Now(mono=10_000.0, wall=1_795_000_000.0)
        end = now.later(days * 86400)
        day_start = {"writes": 0, "bytes": 0}
        while now.mono < end.mono:
            delay = checker.tick(now)
            if now.mono < end.mono - 86400:
                day_start = {"writes": checker.history.writes, "bytes": checker.history.bytes_written}
            now = now.later(delay)
        writes = checker.history.writes - day_start["writes"]
        written = checker.history.bytes_written - day_start["bytes"]
        size = os.path.getsize(os.path.join(data_dir, FILE_NAME))
        points = len(checker.history.points())
    return {"interval_s": interval_s, "writes_per_day": writes, "bytes_per_day": written, "file_bytes": size,
            "points": points, "blocks_per_day": writes * math.ceil(size / BLOCK_BYTES)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=50)
    args = parser.parse_args(argv)
    m = machine()
    print(f"# clock check benchmark\n{describe_machine(m)}\n")
    responders = [FakeNtpServer(skew_s=s).start() for s in (0.0, 0.0004, -0.0004)]
    tmp = tempfile.TemporaryDirectory()
    chrony = LoopbackChrony(tmp.name) if os.path.exists(CHRONYD) else None
    try:
        if chrony:
            chrony.start()
        else:
            responders.append(FakeNtpServer(skew_s=0.0002).start())
        specs = ([chrony.spec] if chrony else []) + [r.spec for r in responders]
        servers_text = ("chronyd + 3 responders" if chrony else "4 responders") + " on 127.0.0.1"
        checks = measure_checks(specs, args.checks)
    finally:
        for r in responders:
            r.stop()
        if chrony:
            chrony.stop()
        tmp.cleanup()
    status = checks["status"]
    print(f"one full check of 4 servers ({servers_text}), {args.checks} checks; last verdict: "
          f"{status.verdict}: {status.reason}; time service: {status.service_detail}\n")

    def row(label, s, scale=1000.0, unit="ms"):
        return [label, s["n"], f"{s['p50'] * scale:.2f} {unit}", f"{s['mean'] * scale:.2f} {unit}",
                f"{s['max'] * scale:.2f} {unit}"]

    print(table(["per check", "n", "p50", "mean", "max"], [
        row("wall time, whole check", checks["wall_s"]),
        row("  NTP queries alone (4 at once)", checks["query_wall_s"]),
        row("  time service + zone readers alone", checks["system_wall_s"]),
        row("CPU, this process", checks["cpu_s"]),
        row("CPU, tools run (children)", checks["children_cpu_s"]),
    ]))
    disk = [measure_disk(900.0), measure_disk(30.0)]
    print("\nhistory file, steady state (7 days held), the 8th simulated day:")
    print(table(["checks every", "points held", "file size", "writes/day", "bytes/day", "4 KiB blocks/day"], [
        [f"{d['interval_s']:.0f} s", d["points"], f"{d['file_bytes']:,} B", d["writes_per_day"],
         f"{d['bytes_per_day']:,} B", d["blocks_per_day"]] for d in disk]))
    print("(plus, per write: an fsync of the file and of data_dir, i.e. one ext4 journal commit; "
          "and one more write at each agent stop)")
    cpu_day = (checks["cpu_s"]["mean"] + checks["children_cpu_s"]["mean"]) * 86400 / 900
    print(f"\nCPU per day at the default 900 s: {cpu_day * 1000:.0f} ms")
    path = save_results("timecheck", {
        "machine": m, "servers": servers_text, "checks": {k: v for k, v in checks.items() if k != "status"},
        "disk": disk, "cpu_per_day_s": cpu_day, "last_verdict": status.as_payload()})
    print(f"results: {os.path.relpath(path)}")
    return {"checks": checks, "disk": disk, "cpu_per_day_s": cpu_day}


def summary_rows(result):
    """Rows [figure, samples, measured, goal, met?] for ``python -m bench``'s summary table."""
    wall, default = result["checks"]["wall_s"], result["disk"][0]
    return [["one clock check (4 loopback NTP servers + time service readers)", f"{wall['n']} checks",
             f"p50 {wall['p50'] * 1000:.1f} ms; CPU {result['cpu_per_day_s'] * 1000:.0f} ms a day", "none set", "-"],
            ["clock history written to disk, checks every 900 s", "a simulated day",
             f"{default['bytes_per_day']:,} bytes a day in {default['writes_per_day']} writes", "none set", "-"]]


if __name__ == "__main__":
    main()
