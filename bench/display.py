"""The OLED's costs: render time per frame, CPU per hour at the default settings, memory the display adds.

1. render: ``hardware.pages.render`` of each page at 128x64 (and 128x32),
   ``--frames`` times each, the heartbeat age changing every frame so no two
   frames are alike; also luma's real ssd1306 driver turning a frame into
   the panel's bytes (on luma's no-op serial interface: everything but the
   I2C transfer itself) and the PNG encoding of the frame file.
2. an hour: a real DisplayService at the default [display] settings (page_s
   5 s, dim_after_s 300 s) on luma's ssd1306 driver over the no-op
   interface, the frame file in a temporary directory (in /dev/shm when
   there is one, as /run is on a Pi), driven through one simulated hour with
   explicit Now readings (no sleeping); the CPU this process used for it
   (time.process_time) is the display's CPU per hour.
3. memory, in a fresh interpreter that has already imported what the agent
   imports anyway: resident memory (VmRSS, and the peak VmHWM) before
   importing hardware.display, and after building the service and running
   the simulated hour; and, in another, the tracemalloc peak of the Python
   allocations for that, imports excluded.

    python -m bench.display [--frames 2000]

Measures and prints; asserts nothing. The I2C transfer of a changed frame
(1 KiB: about 90 ms of bus time at the Pi's default 100 kHz, 23 ms at 400 kHz) is bus time, mostly spent
sleeping in the kernel, and is not in these figures.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from appliance.clock import Now
from appliance.config.schema import Display
from appliance.status import Network, Setup, Snapshot
from bench.common import describe_machine, machine, save_results, summary, table

AT = 1_790_000_000.0
HOUR_S = 3600.0


def snapshot_at(wall):
    """A healthy appliance on Wi-Fi with a heartbeat every 60 s, as seen at ``wall``: ages move every second."""
    return Snapshot(at=wall, device_name="home", configured=True, heartbeat="ok", last_ok_at=wall - wall % 60,
                    beats_sent=int(wall // 60) % 1000, last_error=None,
                    network=Network(interface="wlan0", ip="192.168.1.23", wifi_ssid="HomeNet", wifi_signal_dbm=-61),
                    time_verdict="ok", time_reason="", time_offset_ms=3.2, time_zone="Europe/Berlin",
                    uptime_s=wall - AT + 86400, setup=Setup("K7QM-2XPW", "http://phonehome.local/setup", False))


def panel_device(display_config, *, data_dir=None):
    """luma's real ssd1306 driver on its no-op serial interface: all of luma's work but the bus transfer."""
    from luma.core.interface.serial import noop
    from luma.oled.device import ssd1306

    device = ssd1306(noop(), width=display_config.width, height=display_config.height,
                     rotate=display_config.rotate // 90)
    device.persist = True
    return device


def measure_render(frames):
    """Seconds per render of each page at 128x64 and 128x32, and per ssd1306 conversion and PNG encoding."""
    from hardware.oled import png_bytes
    from hardware.pages import PAGES, render

    results = {}
    for width, height in ((128, 64), (128, 32)):
        for page in PAGES:
            render(page, snapshot_at(AT), width=width, height=height, now_wall=AT)  # warm-up: fonts, big words
            took = []
            for i in range(frames):
                wall = AT + i
                started = time.perf_counter()
                render(page, snapshot_at(wall), width=width, height=height, now_wall=wall)
                took.append(time.perf_counter() - started)
            results[f"{page} {width}x{height}"] = summary(took)
    device = panel_device(Display(driver="ssd1306"))
    frame = render("status", snapshot_at(AT), width=128, height=64, now_wall=AT)
    for name, step in (("ssd1306 display() 128x64", lambda: device.display(frame)),
                       ("PNG encoding 128x64", lambda: png_bytes(frame))):
        took = []
        for _ in range(frames):
            started = time.perf_counter()
            step()
            took.append(time.perf_counter() - started)
        results[name] = summary(took)
    return results


def simulate_hour(*, mirror_dir):
    """A DisplayService at the default settings through one simulated hour; its CPU and what it did."""
    from hardware.display import DisplayService

    config = Display(driver="ssd1306")
    pushed = []

    def opened(display_config, *, data_dir):
        device = panel_device(display_config)
        show = device.display

        def display(image):
            pushed.append(1)
            show(image)

        device.display = display
        return device

    mirror = os.path.join(mirror_dir, "display.png")
    writes = [0, None]

    service = DisplayService(config, snapshot=lambda: snapshot_at(now.wall), clock=None, data_dir=mirror_dir,
                             open_device=opened, mirror_path=mirror)
    now = Now(mono=0.0, wall=AT)
    ticks = 0
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    while now.mono < HOUR_S:
        delay = service.tick(now)
        ticks += 1
        inode = os.stat(mirror).st_ino
        if inode != writes[1]:
            writes = [writes[0] + 1, inode]
        now = now.later(delay)
    cpu_s = time.process_time() - cpu_started
    elapsed_s = time.perf_counter() - wall_started
    service.stop()
    return {"simulated_s": HOUR_S, "ticks": ticks, "frames_to_panel": len(pushed), "frame_file_writes": writes[0],
            "cpu_s": cpu_s, "elapsed_s": elapsed_s, "settings": {"page_s": config.page_s,
                                                                 "dim_after_s": config.dim_after_s}}


def _status_kib(field):
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def memory_child(trace):
    """Run in a fresh interpreter (``--memory-child rss|trace``): print the memory figures as JSON.

    tracemalloc's own bookkeeping grows the resident size, so the resident
    figures come from a run without it and the Python peak from another.
    """
    import tracemalloc

    import appliance.agent.role  # noqa: F401  (what the agent has imported before the display starts)

    rss_before = _status_kib("VmRSS")
    started = time.perf_counter()
    # What the display brings in: Pillow, luma.core and luma.oled, and its own modules.
    import luma.oled.device  # noqa: F401

    import hardware.display
    import hardware.pages  # noqa: F401
    import_s = time.perf_counter() - started
    rss_imported = _status_kib("VmRSS")
    if trace:
        tracemalloc.start()
    with tempfile.TemporaryDirectory() as mirror_dir:
        simulate_hour(mirror_dir=mirror_dir)
    peak = tracemalloc.get_traced_memory()[1] if trace else None
    print(json.dumps({"rss_before_kib": rss_before, "rss_imported_kib": rss_imported,
                      "rss_after_kib": _status_kib("VmRSS"), "hwm_after_kib": _status_kib("VmHWM"),
                      "tracemalloc_peak_kib": None if peak is None else peak / 1024, "import_s": import_s}))


def measure_memory():
    """Memory figures from two fresh interpreters: resident sizes without tracemalloc, the Python peak with it."""
    def child(mode):
        out = subprocess.run([sys.executable, "-m", "bench.display", "--memory-child", mode], capture_output=True,
                             text=True, check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        return json.loads(out.stdout.strip().splitlines()[-1])

    figures = child("rss")
    figures["tracemalloc_peak_kib"] = child("trace")["tracemalloc_peak_kib"]
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000, help="renders per page and size (default 2000)")
    parser.add_argument("--memory-child", choices=("rss", "trace"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child == "trace")
        return None
    m = machine()
    print(f"# display benchmark\n{describe_machine(m)}\n")
    rendering = measure_render(args.frames)
    print(f"per frame, {args.frames} frames each (heartbeat age changing every frame):")
    print(table(["step", "n", "mean", "p50", "p99", "max"], [
        [name, s["n"], f"{s['mean'] * 1000:.3f} ms", f"{s['p50'] * 1000:.3f} ms", f"{s['p99'] * 1000:.3f} ms",
         f"{s['max'] * 1000:.3f} ms"] for name, s in rendering.items()]))
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=shm) as mirror_dir:
        hour = simulate_hour(mirror_dir=mirror_dir)
    memory = measure_memory()
    print(f"\none simulated hour at the default settings (page_s {hour['settings']['page_s']:g} s, dim_after_s "
          f"{hour['settings']['dim_after_s']:g} s), ssd1306 128x64 on luma's no-op interface, frame file in "
          f"{shm or 'a temporary directory'}:")
    print(table(["figure", "value"], [
        ["ticks", f"{hour['ticks']:,}"],
        ["frames handed to the panel", f"{hour['frames_to_panel']:,}"],
        ["frame file writes", f"{hour['frame_file_writes']:,}"],
        ["CPU per hour", f"{hour['cpu_s']:.2f} s ({hour['cpu_s'] / HOUR_S * 100:.3f} % of one core)"],
        ["CPU per tick", f"{hour['cpu_s'] / hour['ticks'] * 1000:.3f} ms"],
    ]))
    added_rss = memory["rss_after_kib"] - memory["rss_before_kib"]
    added_peak = memory["hwm_after_kib"] - memory["rss_before_kib"]
    print("\nmemory the display adds (fresh interpreter, the agent's modules already imported):")
    print(table(["figure", "value"], [
        ["resident before (agent's imports)", f"{memory['rss_before_kib'] / 1024:.1f} MiB"],
        ["+ imports (Pillow, luma, hardware.*)",
         f"{(memory['rss_imported_kib'] - memory['rss_before_kib']) / 1024:.1f} MiB ({memory['import_s'] * 1000:.0f} ms)"],
        ["+ imports, service and an hour of ticks", f"{added_rss / 1024:.1f} MiB"],
        ["peak resident added (VmHWM)", f"{added_peak / 1024:.1f} MiB"],
        ["tracemalloc peak, service and an hour", f"{memory['tracemalloc_peak_kib']:.0f} KiB"],
    ]))
    path = save_results("display", {"machine": m, "frames": args.frames, "render_s": rendering, "hour": hour,
                                    "memory": memory})
    print(f"results: {os.path.relpath(path)}")
    return {"render_s": rendering, "hour": hour, "memory": memory}


def summary_rows(result):
    """Rows [figure, samples, measured, goal, met?] for ``python -m bench``'s summary table."""
    hour, memory = result["hour"], result["memory"]
    worst = max(s["p99"] for s in result["render_s"].values())
    return [["OLED page render, 128x64", f"{next(iter(result['render_s'].values()))['n']:,} frames a step",
             f"p99 {worst * 1000:.2f} ms (slowest step)", "none set", "-"],
            ["display CPU, simulated hour at default settings", f"{hour['ticks']:,} ticks",
             f"{hour['cpu_s']:.2f} s an hour", "none set", "-"],
            ["memory the display adds", "1 run",
             f"+{(memory['rss_after_kib'] - memory['rss_before_kib']) / 1024:.1f} MiB resident", "none set", "-"]]


if __name__ == "__main__":
    main()
