"""The agent's footprint: memory, CPU, wake-ups, disk writes and start-up time of a real ``phonehome agent``.

Every run is a real ``phonehome agent --config FILE`` subprocess, run as
on the appliance where this machine allows it (see ``appliance_command``), at
the default settings, except what must stay on loopback or off the machine:
one heartbeat target, a plain HTTP server in this process on 127.0.0.1
that answers like a monitor and notes when each beat arrives; ``[display]
driver = "emulator"`` (renders each frame as a PNG) with ``emulator_file``
left empty, and ``$RUNTIME_DIRECTORY`` set to a directory on tmpfs
(/dev/shm), as the installed unit sets it to /run/phonehome, so the PNG
goes where it goes on the appliance, into RAM; the unit's Environment= lines
(MALLOC_ARENA_MAX) as on the appliance; ``[web]
listen`` on a free loopback port, the page fetched once so its code is
loaded; ``[time] servers``: 4 NTP responders on 127.0.0.1 in this process
instead of the 4 pool.ntp.org servers; and ``[wifi] hotspot = false``.
data_dir is under /var/tmp, on a disk file system (shown in the report:
/proc/PID/io's write_bytes is 0 on tmpfs).

1. start-up: Popen to the first heartbeat received, ``--starts`` times,
   each in a fresh data_dir (so each one also makes the setup code).
2. steady state at the defaults (heartbeat every 60 s), after ``--settle-s``:
   over ``--steady-s`` seconds, CPU (user + system of all threads, /proc/PID/
   stat), wake-ups (voluntary + involuntary context switches summed over the
   threads alive at each 1 s sample), disk writes (/proc/PID/io); then VmRSS,
   VmHWM and PSS (/proc/PID/smaps_rollup); and, in a fresh interpreter, the
   VmRSS each group of the agent's imports adds.
3. accelerated disk run: every interval the agent writes on divided by
   ``--speedup`` k (heartbeat, clock check, display page and dimming), for
   ``--disk-s`` T seconds: bytes/day = write_bytes / T * 86400 / k. The
   clock history is written every 6 h of real time whatever the config
   says, so its share is bench.timecheck's simulated day, added.

The agent's log (its stdout, the journal on a Pi) is not counted: it goes
to a file of this process. ``python -m bench.agent [--quick]``; measures
and prints, asserts nothing.
"""

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from appliance.timecheck.loopback import FakeNtpServer
from bench.common import (
    ROOT,
    describe_machine,
    free_port,
    machine,
    save_results,
    summary,
    table,
)
from bench.timecheck import measure_disk as timecheck_disk

PHONEHOME = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "phonehome")
DEBIAN_PYTHON = "/usr/bin/python3"
PACKAGES = ("appliance", "web", "hardware")  # pyproject.toml's [tool.setuptools.packages.find]
GOAL_RSS_BYTES = 45_000_000  # "45 MB" read as SI megabytes (42.9 MiB): the stricter reading
GOAL_DISK_BYTES_PER_DAY = 1_000_000
GOAL_STARTUP_S = 2.0
PAGE_BYTES = 4096  # write_bytes counts each page a write dirties
TOKEN = "bench-token-0123456789"
UNIT_FILE = os.path.join(ROOT, "appliance", "system", "phonehome-agent.service")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the heartbeat target ------------------------------------------------------------------------------

class BeatCounter:
    """An HTTP server on 127.0.0.1 that answers heartbeats as a monitor does and stamps each arrival.

    ``arrivals`` holds the time.monotonic() at which each POST's request line was read.
    """

    def __init__(self):
        arrivals = self.arrivals = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                arrivals.append(time.monotonic())
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"ok": True, "received_at": time.time()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/v1/heartbeat"
        threading.Thread(target=self._server.serve_forever, name="beat counter", daemon=True).start()

    def wait_for(self, count, *, timeout_s):
        """The monotonic time the ``count``-th beat arrived, or None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.arrivals) >= count:
                return self.arrivals[count - 1]
            time.sleep(0.002)
        return None

    def close(self):
        self._server.shutdown()
        self._server.server_close()


# -- the agent under test ------------------------------------------------------------------------------

def agent_config(data_dir, beat_url, web_port, *, ntp_servers, speedup=1.0):
    """TOML for an agent at the defaults (intervals divided by ``speedup``) that talks only to loopback.

    ``ntp_servers`` replace the 4 pool.ntp.org servers of the default [time] servers.
    """
    lines = [f'data_dir = "{data_dir}"', "[device]", 'name = "bench"']
    if speedup != 1.0:
        # Defaults from appliance.config.schema, divided by k; timeout_s may not exceed interval_s.
        lines += ["[heartbeat]", f"interval_s = {60 / speedup:g}", f"timeout_s = {min(10.0, 60 / speedup):g}"]
    lines += ["[[heartbeat.targets]]", f'url = "{beat_url}"', f'token = "{TOKEN}"',
              "[time]", f"servers = {json.dumps(list(ntp_servers))}"]
    if speedup != 1.0:
        lines += [f"check_every_s = {900 / speedup:g}", f"until_synced_every_s = {30 / speedup:g}"]
    lines += ["[display]", 'driver = "emulator"']
    if speedup != 1.0:
        lines += [f"page_s = {5 / speedup:g}", f"dim_after_s = {300 / speedup:g}"]
    lines += ["[web]", f'listen = "127.0.0.1:{web_port}"', "[wifi]", "hotspot = false"]
    return "\n".join(lines) + "\n"


def unit_environment(path=UNIT_FILE):
    """{name: value} of the Environment= lines of the agent's systemd unit, as the appliance runs it."""
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("Environment="):
                name, _, value = line[len("Environment="):].strip().partition("=")
                env[name] = value
    return env


class Agent:
    """A ``phonehome agent --config FILE`` subprocess in its own temporary directory under ``parent``."""

    def __init__(self, parent, beat_url, *, command, ntp_servers, runtime_dir, speedup=1.0):
        self.dir = tempfile.mkdtemp(prefix="agent-", dir=parent)
        self.data_dir = os.path.join(self.dir, "data")
        self.web_port = free_port()
        self.config_path = os.path.join(self.dir, "agent.toml")
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(agent_config(self.data_dir, beat_url, self.web_port, ntp_servers=ntp_servers, speedup=speedup))
        self.log_path = os.path.join(self.dir, "agent.log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop())
        self.started = time.monotonic()
        # The environment the installed unit gives it: its Environment= lines, and RUNTIME_DIRECTORY
        # (RuntimeDirectory=phonehome), where the display's picture goes.
        runtime = tempfile.mkdtemp(prefix="run-", dir=runtime_dir)
        # cwd is the agent's own directory: ``python -m appliance`` must not find the checkout in its cwd.
        self.proc = subprocess.Popen([*command, "agent", "--config", self.config_path], stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.dir,
                                     env={**os.environ, **unit_environment(), "RUNTIME_DIRECTORY": runtime})
        self.pid = self.proc.pid
        self.rusage = None

    def proc_file(self, name):
        with open(f"/proc/{self.pid}/{name}", encoding="utf-8") as f:
            return f.read()

    def fields(self, name):
        """{key: first number} of a "Key: value" /proc file (status, io, smaps_rollup)."""
        out = {}
        for line in self.proc_file(name).splitlines():
            key, sep, value = line.partition(":")
            if sep and value.split() and value.split()[0].isdigit():
                out[key.strip()] = int(value.split()[0])
        return out

    def cpu_s(self):
        """(user + system of its threads, user + system of its children that ended) in seconds."""
        f = self.proc_file("stat").rpartition(")")[2].split()
        return (int(f[11]) + int(f[12])) / _CLK_TCK, (int(f[13]) + int(f[14])) / _CLK_TCK

    def thread_switches(self):
        """{tid: voluntary + involuntary context switches} of the threads alive now."""
        out = {}
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{tid}/status", encoding="utf-8") as f:
                    out[tid] = sum(int(line.split()[1]) for line in f
                                   if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")))
            except (FileNotFoundError, ProcessLookupError):
                pass
        return out

    def fetch_page(self):
        """GET the web page's / (following its redirects) and /display.png once, loading their code; returns
        "path status" strings."""
        statuses, paths = [], ["/", "/display.png"]
        while paths:
            path = paths.pop(0)
            for _ in range(200):  # the page starts a moment after the first beat
                conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=30)
                try:
                    conn.request("GET", path)
                    break
                except ConnectionRefusedError:
                    conn.close()
                    time.sleep(0.05)
            response = conn.getresponse()
            response.read()
            statuses.append(f"{path} {response.status}")
            location = response.getheader("Location") or ""
            if response.status in (301, 302, 303) and location.startswith("/") and len(statuses) < 5:
                paths.insert(0, location)  # the setup page of an unclaimed appliance, as a browser goes on to
            conn.close()
        return statuses

    def stop(self):
        """SIGTERM and wait (SIGKILL after 20 s); keeps the whole life's rusage (os.wait4) in ``rusage``."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                pid, status, usage = os.wait4(self.pid, os.WNOHANG)
                if pid:
                    self.rusage, self.proc.returncode = usage, os.waitstatus_to_exitcode(status)
                    break
                time.sleep(0.05)
            else:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log_tail(self, lines=20):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])


# -- the measurements ----------------------------------------------------------------------------------

def measure_startups(parent, starts, ntp, runtime_dir, command):
    """Seconds from Popen to the first heartbeat received, ``starts`` times (fresh data_dir each time)."""
    samples = []
    for _ in range(starts):
        counter = BeatCounter()
        agent = Agent(parent, counter.url, command=command, ntp_servers=ntp, runtime_dir=runtime_dir)
        try:
            first = counter.wait_for(1, timeout_s=30)
            samples.append(None if first is None else first - agent.started)
        finally:
            agent.stop()
            counter.close()
    return samples


def measure_steady(parent, ntp, runtime_dir, command, *, settle_s, steady_s):
    """CPU, wake-ups, disk writes and memory of an agent at the defaults over ``steady_s`` seconds."""
    counter = BeatCounter()
    agent = Agent(parent, counter.url, command=command, ntp_servers=ntp, runtime_dir=runtime_dir)
    try:
        first = counter.wait_for(1, timeout_s=30)
        if first is None:
            raise RuntimeError(f"the agent sent no heartbeat within 30 s:\n{agent.log_tail()}")
        page_statuses = agent.fetch_page()
        time.sleep(settle_s)
        beats0, cpu0, io0 = len(counter.arrivals), agent.cpu_s(), agent.fields("io")
        wall0 = time.monotonic()
        first_seen, last_seen = agent.thread_switches(), {}
        last_seen.update(first_seen)
        threads = []
        while time.monotonic() - wall0 < steady_s:
            time.sleep(1.0)
            now = agent.thread_switches()
            last_seen.update(now)
            threads.append(len(now))
        wall_s = time.monotonic() - wall0
        cpu1, io1 = agent.cpu_s(), agent.fields("io")
        status, rollup = agent.fields("status"), agent.fields("smaps_rollup")
        per_thread = sorted((n - first_seen.get(tid, 0) for tid, n in last_seen.items()), reverse=True)
        result = {
            "page_statuses": page_statuses,
            "window_s": wall_s,
            "beats": len(counter.arrivals) - beats0,
            "cpu_s": cpu1[0] - cpu0[0],
            "children_cpu_s": cpu1[1] - cpu0[1],
            "context_switches": sum(per_thread),
            "context_switches_per_thread": per_thread,
            "threads_min_max": [min(threads), max(threads)],
            "io": {k: io1[k] - io0[k] for k in io1},
            "vm_rss_kib": status["VmRSS"], "vm_hwm_kib": status["VmHWM"], "pss_kib": rollup["Pss"],
            "rss_anon_kib": status.get("RssAnon"), "rss_file_kib": status.get("RssFile"),
        }
    finally:
        exit_code = agent.stop()
        counter.close()
    usage = agent.rusage
    result["exit_code"] = exit_code
    result["life_s"] = time.monotonic() - agent.started
    result["life_context_switches"] = None if usage is None else usage.ru_nvcsw + usage.ru_nivcsw
    result["data_dir_filesystem"] = filesystem(agent.data_dir if os.path.exists(agent.data_dir) else agent.dir)
    return result


def measure_disk(parent, ntp, runtime_dir, command, *, speedup, seconds):
    """Disk writes of an agent with its intervals divided by ``speedup``, over ``seconds``."""
    counter = BeatCounter()
    agent = Agent(parent, counter.url, command=command, ntp_servers=ntp, speedup=speedup, runtime_dir=runtime_dir)
    try:
        if counter.wait_for(1, timeout_s=30) is None:
            raise RuntimeError(f"the agent sent no heartbeat within 30 s:\n{agent.log_tail()}")
        agent.fetch_page()
        time.sleep(2.0)  # past the start-up writes (setup code, first clock check)
        beats0, io0, wall0 = len(counter.arrivals), agent.fields("io"), time.monotonic()
        time.sleep(seconds)
        io1, wall_s = agent.fields("io"), time.monotonic() - wall0
        beats = len(counter.arrivals) - beats0
        files = sorted(os.listdir(agent.data_dir))
    finally:
        exit_code = agent.stop()
        counter.close()
    io = {k: io1[k] - io0[k] for k in io1}
    per_day = 86400 / wall_s / speedup
    return {"speedup": speedup, "window_s": wall_s, "beats": beats, "io": io, "exit_code": exit_code,
            "data_dir_files": files, "write_bytes_per_day": io["write_bytes"] * per_day,
            "cancelled_write_bytes_per_day": io["cancelled_write_bytes"] * per_day,
            "wchar_per_day": io["wchar"] * per_day, "data_dir_filesystem": filesystem(agent.data_dir)}


def filesystem(path):
    """The file system type (ext4, tmpfs, ...) of the mount that holds ``path`` (/proc/self/mounts)."""
    best, kind = "", "unknown"
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            _, mount_point, fs_type = line.split()[:3]
            if (path == mount_point or path.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) > len(best):
                best, kind = mount_point, fs_type
    return kind


# What the agent imports, in groups, in the order it imports them (appliance.cli, the role's parts, the page).
IMPORT_GROUPS = (
    ("the config and CLI", ("appliance.cli", "appliance.agent.role", "appliance.runtime")),
    ("ssl and http.client", ("ssl", "http.client")),
    ("heartbeats, clock check", ("appliance.agent.transport", "appliance.timecheck.checker",
                                 "appliance.agent.heartbeats")),
    ("setup code, password hashing", ("appliance.setup",)),
    ("display: Pillow, luma", ("hardware.panel",)),
    ("Flask, Werkzeug, Jinja2, WTForms, waitress", ("flask", "flask_wtf", "wtforms", "waitress")),
    ("the web page's own modules", ("web", "web.server", "web.actions", "web.dashboard", "web.settings")),
)
_IMPORT_PROBE = """
import importlib, json, sys
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
out = [["the Python interpreter", rss()]]
for label, modules in json.loads(sys.argv[1]):
    before = rss()
    for m in modules:
        importlib.import_module(m)
    out.append([label, rss() - before])
print(json.dumps(out))
"""


def import_costs():
    """[(group, KiB of VmRSS its imports add)] in a fresh interpreter, the agent's import order."""
    done = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, json.dumps(IMPORT_GROUPS)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, check=True)
    return json.loads(done.stdout)


# -- the report ----------------------------------------------------------------------------------------

def appliance_command(parent):
    """(argv prefix that runs phonehome, how it is installed): phonehome as the appliance runs it when possible.

    The SD image runs Debian's python3 with phonehome installed from its
    wheel; a development venv may use another build of Python (one with a
    shared libpython is about 1 MiB larger resident) and an editable install
    (whose import hook loads modules the appliance never does). So: a venv of
    Debian's python3 (when it is the same CPython minor version as this one,
    so the venv's compiled libraries fit) with a copy of phonehome's packages
    in it, as its wheel installs them, and this venv's libraries behind it.
    Otherwise this venv's phonehome.
    """
    here = "this venv's phonehome ({}, {})".format(sys.executable, platform.python_version())
    if not os.path.exists(DEBIAN_PYTHON) or os.path.realpath(DEBIAN_PYTHON) == os.path.realpath(sys.executable):
        return [PHONEHOME], here
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import sys, platform; print(sys.version_info[:2] == %r, "
                            "platform.python_version())" % (tuple(sys.version_info[:2]),)],
                           capture_output=True, text=True, timeout=30, check=False)
    same, _, version = probe.stdout.strip().partition(" ")
    if probe.returncode != 0 or same != "True":
        return [PHONEHOME], here
    venv = os.path.join(parent, "appliance-venv")
    subprocess.run([DEBIAN_PYTHON, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    site = subprocess.run([os.path.join(venv, "bin", "python"), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()
    for package in PACKAGES:  # what phonehome's wheel holds: its three packages with their data files
        shutil.copytree(os.path.join(ROOT, package), os.path.join(site, package),
                        ignore=shutil.ignore_patterns("__pycache__"))
    libraries = sysconfig.get_paths()["purelib"]
    with open(os.path.join(site, "zz-libraries.pth"), "w", encoding="utf-8") as f:
        f.write(libraries + "\n")  # after phonehome's own copy; this venv's .pth hooks are not run from here
    return ([os.path.join(venv, "bin", "python"), "-m", "appliance"],
            f"as on the appliance: Debian's python3 {version}, phonehome installed (not editable), this venv's "
            f"libraries")


def run(*, starts, settle_s, steady_s, speedup, disk_s):
    responders = [FakeNtpServer(skew_s=s).start() for s in (0.0, 0.0004, -0.0004, 0.0002)]
    ntp = [r.spec for r in responders]
    try:
        with tempfile.TemporaryDirectory(prefix="phonehome-bench-agent-", dir="/var/tmp") as parent, \
                tempfile.TemporaryDirectory(prefix="phonehome-bench-agent-", dir="/dev/shm") as shm:
            command, installed = appliance_command(parent)
            startup = measure_startups(parent, starts, ntp, shm, command)
            steady = measure_steady(parent, ntp, shm, command, settle_s=settle_s, steady_s=steady_s)
            disk = measure_disk(parent, ntp, shm, command, speedup=speedup, seconds=disk_s)
    finally:
        for r in responders:
            r.stop()
    steady["ntp_queries"] = sum(r.queries for r in responders)
    # The clock history is written every 6 h of real time (history.FLUSH_EVERY_S), which no config scales: a run
    # of minutes never sees it. Its cost is bench.timecheck's simulated day at the default 900 s.
    history = timecheck_disk(900.0)
    return {"installed": installed, "startup_s": startup, "steady": steady, "disk": disk, "clock_history": history,
            "import_costs_kib": import_costs(),
            "write_bytes_per_day": disk["write_bytes_per_day"] + history["blocks_per_day"] * PAGE_BYTES}


def _mb(kib):
    return f"{kib * 1024 / 1e6:.1f} MB ({kib / 1024:.1f} MiB)"


def _met(ok):
    return "met" if ok else "NOT met"


def report(result):
    """The printed table and notes of one run."""
    s, d, h = result["steady"], result["disk"], result["clock_history"]
    memory, cpu, wakeups, startup, disk = summary_rows(result)
    rows = [
        memory,
        ["  PSS (/proc/PID/smaps_rollup)", "1 reading", _mb(s["pss_kib"]), "", ""],
        ["  peak (VmHWM)", "1 reading", _mb(s["vm_hwm_kib"]), "", ""],
        cpu,
        ["  CPU of the tools it ran (timedatectl ...)", "", f"{s['children_cpu_s'] * 3600 / s['window_s']:.1f}"
         f" s/hour", "", ""],
        wakeups, startup, disk,
        ["  of which: accelerated run, write_bytes", f"{d['window_s']:.0f} s x k={d['speedup']:g}",
         f"{d['write_bytes_per_day']:,.0f} B/day", "", ""],
        ["  of which: clock history (every 6 h, simulated)", "a simulated day",
         f"{h['writes_per_day']} writes x {h['file_bytes']:,} B = {h['blocks_per_day'] * PAGE_BYTES:,} B/day", "", ""],
    ]
    costs = result["import_costs_kib"]
    imported = sum(kib for _, kib in costs)
    memory_rows = [[label, f"{kib / 1024:.1f} MiB"] for label, kib in costs]
    memory_rows.append(["the rest: data, threads, caches built while running",
                        f"{(s['vm_rss_kib'] - imported) / 1024:.1f} MiB"])
    life = s["life_context_switches"]
    threads_text = ", ".join(f"{n * 60 / s['window_s']:.0f}" for n in s["context_switches_per_thread"] if n)
    return "\n".join([
        f"phonehome run: {result['installed']}",
        table(["figure", "samples", "measured", "goal", "met?"], rows),
        "\n   where the resident memory goes: VmRSS each group of imports adds in a fresh interpreter, in the "
        "agent's order, and the rest of the steady-state VmRSS",
        table(["part", "VmRSS"], memory_rows),
        f"   MB = 10^6 bytes, MiB = 2^20. Steady state: heartbeat every 60 s ({s['beats']} beats in the window), "
        f"clock checks against 4 NTP responders on 127.0.0.1 ({s['ntp_queries']} queries in all runs), page "
        f"fetched once ({', '.join(s['page_statuses'])}), {s['threads_min_max'][0]}-{s['threads_min_max'][1]} "
        f"threads; RssAnon {_mb(s['rss_anon_kib'])}, RssFile {_mb(s['rss_file_kib'])}",
        f"   CPU per hour and wake-ups per minute: {s['window_s']:.0f} s measured, scaled. Wake-ups = voluntary + "
        f"involuntary context switches summed over the threads alive at each 1 s sample (threads that start "
        f"and end between samples, like each request's deadline timer, are missed); over its whole life (wait4, "
        f"start-up and stop included): {life} in {s['life_s']:.0f} s. Per thread, /min: "
        f"{threads_text}",
        f"   disk: /proc/PID/io write_bytes (pages dirtied: a small file costs 4 KiB; the ext4 journal is "
        f"not counted, nor is the agent's log on stdout). Accelerated run: intervals / {d['speedup']:g} "
        f"({d['beats']} beats in {d['window_s']:.0f} s), the emulator's PNG in $RUNTIME_DIRECTORY (tmpfs), "
        f"as under systemd; data_dir on {d['data_dir_filesystem']} holds {', '.join(d['data_dir_files'])}; "
        f"cancelled_write_bytes {d['cancelled_write_bytes_per_day']:,.0f} B/day; wchar (all write() calls, "
        f"sockets included) {d['wchar_per_day'] / 1e6:.2f} MB/day",
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--settle-s", type=float, default=20.0)
    parser.add_argument("--steady-s", type=float, default=150.0)
    parser.add_argument("--speedup", type=float, default=60.0)
    parser.add_argument("--disk-s", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="2 starts, 30 s steady, 20 s accelerated")
    args = parser.parse_args(argv)
    if args.quick:
        args.starts, args.settle_s, args.steady_s, args.disk_s = 2, 5.0, 30.0, 20.0
    m = machine()
    print(f"# agent footprint\n{describe_machine(m)}\n")
    result = run(starts=args.starts, settle_s=args.settle_s, steady_s=args.steady_s, speedup=args.speedup,
                 disk_s=args.disk_s)
    print(report(result))
    path = save_results("agent", {"machine": m, "args": vars(args), **result})
    print(f"results: {os.path.relpath(path)}")
    return result


def summary_rows(result):
    """Rows [figure, samples, measured, goal, met?] for ``python -m bench``'s summary table."""
    s, d = result["steady"], result["disk"]
    ok = [x for x in result["startup_s"] if x is not None]
    st = summary(ok)
    disk_day = result["write_bytes_per_day"]
    return [
        ["agent resident memory (VmRSS)", "1 reading after steady state", _mb(s["vm_rss_kib"]),
         f"< {GOAL_RSS_BYTES / 1e6:.0f} MB", _met(s["vm_rss_kib"] * 1024 < GOAL_RSS_BYTES)],
        ["agent CPU (user + system, all threads)", f"{s['window_s']:.0f} s, scaled to an hour",
         f"{s['cpu_s'] * 3600 / s['window_s']:.1f} s/hour", "none set", "-"],
        ["agent wake-ups (context switches)", f"{s['window_s']:.0f} s, scaled to a minute",
         f"{s['context_switches'] * 60 / s['window_s']:.0f} /min", "none set", "-"],
        ["agent start-up: Popen -> first beat received", f"{st['n']} starts ({len(result['startup_s']) - st['n']} "
         f"failed)", "-" if not ok else f"p50 {st['p50']:.2f} s, max {st['max']:.2f} s", f"< {GOAL_STARTUP_S:g} s",
         _met(ok and len(ok) == len(result["startup_s"]) and st["max"] < GOAL_STARTUP_S)],
        ["agent disk writes (the emulator's PNG in the runtime directory, RAM)",
         f"{d['window_s']:.0f} s at k={d['speedup']:g} + clock history", f"{disk_day / 1e6:.3f} MB/day",
         f"< {GOAL_DISK_BYTES_PER_DAY / 1e6:g} MB/day", _met(disk_day < GOAL_DISK_BYTES_PER_DAY)],
    ]


if __name__ == "__main__":
    main()
