"""What every benchmark shares: the machine it ran on, a real monitor process, tables and result files.

Benchmarks measure and print; they never assert. Every figure carries what
was measured, on what and how many samples, so a number in a commit message
or an issue can be traced back to its run (the JSON under bench/results/).
"""

import datetime
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "bench", "results")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the machine -------------------------------------------------------

def machine():
    """A dict describing this machine and the software measured (CPU, cores, Python, library versions)."""
    cpu, virtual = "unknown", None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and virtual is None:
                    virtual = "hypervisor" in line.split()
    except OSError:
        pass
    versions = {}
    for dist in ("flask", "werkzeug", "waitress", "aiosmtpd"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "virtual_machine": virtual,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "mem_total_mib": _meminfo_mib("MemTotal"),
        "versions": versions,
        "git_head": _git_head(),
        "changed_since_head": _changed_files(),
    }


def describe_machine(m):
    """One line for the top of a report."""
    v = m["versions"]
    where = " (virtual machine)" if m["virtual_machine"] else ""
    changed = f" (+ uncommitted changes in {', '.join(m['changed_since_head'])})" if m["changed_since_head"] else ""
    return (f"{m['nproc']} CPU(s){where}, {m['cpu_model']}, {m['mem_total_mib']} MiB RAM, Linux {m['kernel']}, "
            f"{m['implementation']} {m['python']}, Flask {v['flask']}, Werkzeug {v['werkzeug']}, "
            f"waitress {v['waitress']}; phonehome at {m['git_head'] or 'unknown commit'}{changed}")


def _meminfo_mib(key):
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _git_head():
    try:
        out = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _changed_files():
    """Tracked files under appliance/ and web/ that differ from HEAD: what a "-dirty" figure measured."""
    try:
        out = subprocess.run(["git", "-C", ROOT, "diff", "--name-only", "HEAD", "--", "appliance", "web"],
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.split()


def machine_busy_s():
    """CPU seconds all CPUs of this machine have been busy since boot (/proc/stat: not idle, not iowait).

    Steal time counts as busy: on a virtual machine it is time a process here wanted and did not get.
    """
    with open("/proc/stat", encoding="utf-8") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def load_average():
    """The 1-minute load average of this machine."""
    with open("/proc/loadavg", encoding="utf-8") as f:
        return float(f.read().split()[0])


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- statistics and output ---------------------------------------------

def percentile(values, p):
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of ``values``; None when there are none.

    Nearest rank means a reported value was really observed; with fewer than
    100 samples p99 is the maximum.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values):
    """{"n", "min", "p50", "p99", "max", "mean"} of ``values`` (seconds or any unit)."""
    if not values:
        return {"n": 0, "min": None, "p50": None, "p99": None, "max": None, "mean": None}
    return {"n": len(values), "min": min(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values), "mean": sum(values) / len(values)}


def table(headers, rows):
    """Plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def ms(seconds):
    """Seconds as milliseconds text with one decimal, or '-' for None."""
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def results_path(name, suffix=".json"):
    """bench/results/NAME-<UTC time>SUFFIX (the directory is created); git ignores *.json there."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return os.path.join(RESULTS_DIR, f"{name}-{stamp}{suffix}")


def save_results(name, data):
    """Write ``data`` as bench/results/NAME-<UTC time>.json; return the path."""
    path = results_path(name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    return path


def utc_now_text():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# -- the monitor under test ----------------------------------------------

# The [web] api_token of every benchmark's monitor: its device list and /metrics need it (or a login).
API_TOKEN = "bench-api-token-0123456789abcdef"
API_HEADERS = {"Authorization": f"Bearer {API_TOKEN}"}


def monitor_config_text(*, port, data_dir, devices, smtp_port=None):
    """TOML for a monitor on 127.0.0.1:``port``.

    ``devices`` is a list of (name, token, max_silence_s, reminder_every_s);
    with ``smtp_port`` alerts go by e-mail (security "none") to a sink there.
    """
    # flap_threshold = 0: the benches repeat outages of one device on purpose, and flapping summaries would
    # hold those alerts back.
    lines = [f'data_dir = "{data_dir}"', "[web]", f'api_token = "{API_TOKEN}"', "[monitor]",
             f'listen = "127.0.0.1:{port}"', "flap_threshold = 0"]
    for name, token, silence_s, reminder_s in devices:
        lines += ["[[monitor.devices]]", f'name = "{name}"', f'token = "{token}"',
                  f"max_silence_s = {silence_s}", f"reminder_every_s = {reminder_s}"]
    if smtp_port is not None:
        lines += ["[alerts.email]", 'smtp_host = "127.0.0.1"', f"smtp_port = {smtp_port}", 'security = "none"',
                  'sender = "phonehome@example.com"', 'to = ["me@example.com"]']
    return "\n".join(lines) + "\n"


class MonitorProcess:
    """A real ``phonehome monitor --config FILE`` subprocess, its output in ``log_path``.

    A context manager: leaving it stops the process (SIGTERM, then SIGKILL
    after 10 s). ``pid`` is the Python process itself (no shell in between),
    so its /proc figures are the monitor's.
    """

    def __init__(self, config_path, port, *, log_path):
        self.config_path = config_path
        self.port = port
        self.log_path = log_path
        self.base_url = f"http://127.0.0.1:{port}"
        self._log = None
        self.proc = None

    def start(self, *, ready_within_s=60.0):
        """Start the monitor and wait until its HTTP API answers; return the seconds that took.

        Raises RuntimeError with the end of its log if it exits or does not answer in time.
        """
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (open for the process's life, closed in stop())
        started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance", "monitor", "--config", self.config_path],
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        session = requests.Session()
        while time.monotonic() - started < ready_within_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the monitor exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                # A GET on the heartbeat URL is a cheap 405 that proves Flask is serving.
                session.get(self.base_url + "/api/v1/heartbeat", timeout=1)
                return time.monotonic() - started
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"the monitor did not answer within {ready_within_s:g} s:\n{self.log_tail()}")

    @property
    def pid(self):
        return self.proc.pid

    def rss_kib(self):
        """The monitor's resident set size (VmRSS) in KiB."""
        with open(f"/proc/{self.pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def cpu_s(self):
        """User + system CPU seconds the monitor has used so far (all its threads)."""
        user_s, system_s = self.cpu_split_s()
        return user_s + system_s

    def cpu_split_s(self):
        """(user, system) CPU seconds the monitor has used so far (all its threads)."""
        with open(f"/proc/{self.pid}/stat", encoding="utf-8") as f:
            fields = f.read().rpartition(")")[2].split()
        return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK

    def context_switches(self):
        """Voluntary + involuntary context switches of all the monitor's threads so far."""
        total = 0
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{tid}/status", encoding="utf-8") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                            total += int(line.split()[1])
            except FileNotFoundError:  # a thread that just ended
                pass
        return total

    def threads(self):
        """Number of threads in the monitor process."""
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def received_total(self):
        """``phonehome_heartbeats_received_total`` from the monitor's /metrics."""
        text = requests.get(self.base_url + "/metrics", headers=API_HEADERS, timeout=30).text
        for line in text.splitlines():
            if line.startswith("phonehome_heartbeats_received_total "):
                return int(float(line.split()[1]))
        raise RuntimeError("no phonehome_heartbeats_received_total in /metrics")

    def stop(self, *, timeout_s=10.0):
        """SIGTERM, wait; SIGKILL if it is still running after ``timeout_s``. Returns (exit code, seconds)."""
        if self.proc is None:
            return None, 0.0
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode, time.monotonic() - started

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False
