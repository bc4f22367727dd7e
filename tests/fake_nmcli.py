"""A stand-in for NetworkManager's ``nmcli`` (NetworkManager cannot run in the tests), first on PATH.

It answers the exact commands phonehome sends, in nmcli's terse output format (':' separated, ':' and '\\'
escaped), from a JSON state file the test sets up and reads back. Every call is appended to state["calls"].
"""

import json
import os
import stat
import sys

SCRIPT = r'''#!PYTHON
import json, sys
STATE = "STATEFILE"
s = json.load(open(STATE))
args = sys.argv[1:]
s["calls"].append(args)
def esc(v): return str(v).replace("\\", "\\\\").replace(":", "\\:")
def out(rows): print("\n".join(":".join(esc(v) for v in row) for row in rows))
def save(): json.dump(s, open(STATE, "w"))
def fail(msg, code=10):
    save(); print("Error: " + msg, file=sys.stderr); sys.exit(code)
a = [x for x in args if x not in ("--wait",)]
if s.get("broken"):
    fail("NetworkManager is not running.", 8)
if args[:1] == ["-t"] and "device" in args and "status" in args:
    out(s["devices"])
elif args[:1] == ["-t"] and "wifi" in args and "list" in args:
    out([["*" if n.get("in_use") else "", n["ssid"], n["signal"], n["security"]] for n in s["networks"]])
elif args[:1] == ["-t"] and "connection" in args and "show" in args:
    out([[c] for c in s["connections"]])
elif "connect" in args:
    ssid = args[args.index("connect") + 1]
    pw = args[args.index("password") + 1] if "password" in args else ""
    s["connections"].append(ssid)
    if s["passwords"].get(ssid) != pw:
        fail("Connection activation failed: Secrets were required, but not provided.", 4)
    for d in s["devices"]:
        if d[1] == "wifi":
            d[2], d[3] = "connected", ssid
elif args[:2] == ["connection", "add"]:
    s["connections"].append(args[args.index("con-name") + 1])
elif args[:2] == ["connection", "up"]:
    for d in s["devices"]:
        if d[1] == "wifi":
            d[2], d[3] = "connected", args[2]
elif args[:2] == ["connection", "down"]:
    for d in s["devices"]:
        if d[3] == args[2]:
            d[2], d[3] = "disconnected", ""
elif args[:2] == ["connection", "delete"]:
    s["connections"].remove(args[2])
else:
    fail("unknown command: " + " ".join(args), 2)
save()
'''


class FakeNmcli:
    def __init__(self, tmp_path, monkeypatch, *, devices, networks=(), passwords=None):
        self.state_file = tmp_path / "nm-state.json"
        bin_dir = tmp_path / "fake-bin"
        bin_dir.mkdir()
        script = bin_dir / "nmcli"
        script.write_text(SCRIPT.replace("PYTHON", sys.executable).replace("STATEFILE", str(self.state_file)))
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        self.write(devices=[list(d) for d in devices], networks=list(networks), connections=[],
                   passwords=passwords or {}, calls=[])

    def read(self):
        return json.loads(self.state_file.read_text())

    def write(self, **changes):
        state = self.read() if self.state_file.exists() else {}
        state.update(changes)
        self.state_file.write_text(json.dumps(state))

    def calls(self):
        return self.read()["calls"]
