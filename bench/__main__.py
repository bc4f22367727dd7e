"""``python -m bench`` (``make bench``): every benchmark in turn, then their headline figures and goals together.

The summary is printed as a table and saved as bench/results/summary-<UTC time>.json, next to each
benchmark's own JSON. ``--only agent,wire`` runs some of them. Each is also runnable alone with its own
options: ``python -m bench.agent``, ``bench.wire``, ``bench.detection``, ``bench.ingest``,
``bench.timecheck``, ``bench.display``, ``bench.web``, ``bench.monitor_pages``.

A benchmark that crashes is reported in the summary and the others still run; the exit code is then 1.
"""

import argparse
import importlib
import sys
import time
import traceback

from bench.common import describe_machine, machine, save_results, table, utc_now_text

# In the order they run: the agent's own figures first, then the monitor's, then the pages.
BENCHMARKS = ("agent", "wire", "detection", "ingest", "timecheck", "display", "web", "monitor_pages")
HEADERS = ["figure", "samples", "measured", "goal", "met?"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated, from: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    names = BENCHMARKS if not args.only else tuple(n.strip() for n in args.only.split(",") if n.strip())
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    started, rows, runs = time.monotonic(), [], {}
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        began = time.monotonic()
        try:
            new = module.summary_rows(module.main([]))
            runs[name] = {"ok": True, "seconds": time.monotonic() - began}
        except Exception as e:  # noqa: BLE001 (one broken benchmark must not hide the others' figures)
            traceback.print_exc()
            new = [[f"{name}: the benchmark failed", "-", f"{type(e).__name__}: {e}", "-", "FAILED"]]
            runs[name] = {"ok": False, "seconds": time.monotonic() - began, "error": f"{type(e).__name__}: {e}"}
        rows += new
        print("\n")
    took_s = time.monotonic() - started
    m = machine()
    print("== summary")
    print(describe_machine(m))
    print(table(HEADERS, rows))
    print(f"(the benchmarks took {took_s:.0f} s)")
    path = save_results("summary", {"machine": m, "at": utc_now_text(), "took_s": took_s, "benchmarks": runs,
                                    "headers": HEADERS, "rows": rows})
    print(f"results: {path}")
    return 0 if all(r["ok"] for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
