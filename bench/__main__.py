"""``python -m bench``: every benchmark in turn, then their headline figures and goals together.

Each is also runnable alone: ``python -m bench.detection``, ``python -m bench.ingest``,
``python -m bench.timecheck``, ``python -m bench.display``, ``python -m bench.web``,
``python -m bench.monitor_pages``.
"""

import time

from bench import detection, display, ingest, monitor_pages, timecheck, web
from bench.common import ms, table


def main():
    started = time.monotonic()
    runs = detection.main([])
    print("\n")
    result = ingest.main([])
    print("\n")
    timecheck.main([])
    print("\n")
    display.main([])
    print("\n")
    pages = web.main([])
    print("\n")
    monitor = monitor_pages.main([])
    rows = []
    for r in runs:
        for label, key in (("detection latency", "detection_s"), ("restore latency", "restore_s")):
            s = r[key]
            rows.append([f"{label}, {r['devices_registered']:,} device(s) registered", f"{s['n']} outages",
                         f"p50 {ms(s['p50'])} ms, p99 {ms(s['p99'])} ms, max {ms(s['max'])} ms",
                         f"< {detection.GOAL_S * 1000:.0f} ms at p100",
                         "met" if s["max"] is not None and s["max"] < detection.GOAL_S else "NOT met"])
    s = result["sustained"]
    rows.append([f"ingest, {result['devices_registered']:,} devices registered", f"{s['duration_s']:.0f} s",
                 (f"{s['requests_per_s']:,.0f} heartbeats/s, p50 {s['latency_ms']['p50']:.1f} ms, "
                 f"p99 {s['latency_ms']['p99']:.1f} ms, {s['non_200']} non-200"),
                 f">= {ingest.GOAL_PER_S:,}/s (median of {len(result['sustained_runs'])} runs)",
                 "met" if s["requests_per_s"] >= ingest.GOAL_PER_S and s["non_200"] == 0 else "NOT met"])
    for state in ("fresh", "full"):
        v = pages[state]["first"]
        rows.append([f"dashboard first visit, {state} history", f"{v['ttfb_s']['n']} loads",
                     f"TTFB p50 {ms(v['ttfb_s']['p50'])} ms, p99 {ms(v['ttfb_s']['p99'])} ms; "
                     f"{v['wire_bytes'] / 1024:.0f} KiB", "none set", "-"])
    for r in monitor["requests"][:1] + monitor["requests"][4:5]:
        s = r["seconds"]
        rows.append([f"monitor {r['what']}, {monitor['devices_registered']:,} devices", f"{s['n']} requests",
                     f"p50 {ms(s['p50'])} ms, p99 {ms(s['p99'])} ms", "none set", "-"])
    print("\n== summary")
    print(table(["figure", "samples", "measured", "goal", "met?"], rows))
    print(f"(all benchmarks took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
