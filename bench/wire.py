"""Wire cost: the bytes and packets one heartbeat costs on the link, with and without connection reuse, http and https.

What a site on metered mobile data pays for: every IP byte, TCP's handshake,
ACKs and FIN included, and TLS's handshake. Measured on a real link between
two network namespaces this bench makes (as root: ``unshare``), so nothing
else is counted and nothing leaves the machine:

- the agent's side (a namespace with its own mount namespace, so its
  /etc/hosts and /etc/resolv.conf are files of this run): the real
  heartbeat request (``targets.build_request`` of a real beat, with the
  clock check's summary from a real check of 4 NTP responders on its
  loopback);
- the monitor's side: a real ``phonehome monitor`` on 10.0.0.2:80, a TLS
  terminator on 10.0.0.2:443 (a trustme certificate for
  monitor.example.com) that forwards to it over that namespace's loopback,
  and a DNS server on 10.0.0.2:53 answering monitor.example.com;
- between them a veth pair (MTU 1500, segmentation offload off, static
  neighbour entries so no ARP, IPv6 off so no router or neighbour
  discovery): /proc/net/dev of the agent's end counts both directions. IP
  bytes = link bytes - 14 (the Ethernet header) per packet.

Cases, each over ``--beats`` beats:

- without reuse: ``transport.send``, the agent's real transport: a DNS
  lookup (A and AAAA), a fresh TCP connection (and TLS session) and
  ``Connection: close`` per beat. The DNS share is also measured alone.
- with reuse: the same request (the same headers but ``Connection:
  close``) sent from one ``requests.Session``, so every beat after the
  first goes over one kept-alive connection: per beat is the steady state;
  opening and closing the connection once is shown apart.

    python -m bench.wire [--beats 20]

Measures and prints; asserts nothing. Needs root (network namespaces).
"""

import argparse
import json
import os
import select
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

from bench.common import ROOT, MonitorProcess, describe_machine, machine, monitor_config_text, save_results, table

HOST = "monitor.example.com"
CLIENT_IP, SERVER_IP = "10.0.0.1", "10.0.0.2"
CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
LINK_HEADER_BYTES = 14
TOKEN = "wire-token-0123456789abcdef"
DEFAULT_INTERVAL_S = 60.0
SETTLE_S = 0.3  # after the last beat: the last FIN's ACK is on the wire well before this


# -- the parent: run the measurement in namespaces of its own ---------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beats", type=int, default=20)
    parser.add_argument("--client-side", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--server-side", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.server_side:
        return _server_side(args.server_side)
    if args.client_side:
        return _client_side(args.client_side, args.beats)
    m = machine()
    print(f"# wire cost of a heartbeat\n{describe_machine(m)}\n")
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        print("needs root, unshare and ip (iproute2): the link is a veth pair between network namespaces")
        return {"error": "not root, or unshare/ip missing"}
    with tempfile.TemporaryDirectory(prefix="phonehome-bench-wire-") as tmp:
        done = subprocess.run(["unshare", "--net", "--mount", sys.executable, "-m", "bench.wire", "--client-side", tmp,
                               "--beats", str(args.beats)], cwd=ROOT, capture_output=True, text=True, timeout=600)
        path = os.path.join(tmp, "result.json")
        if done.returncode != 0 or not os.path.exists(path):
            print(f"the measurement failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
            return {"error": f"exit {done.returncode}"}
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    print(report(result))
    path = save_results("wire", {"machine": m, "beats": args.beats, **result})
    print(f"results: {os.path.relpath(path)}")
    return result


# -- the monitor's side -------------------------------------------------------------------------------------

def _server_side(tmp):
    """In a fresh network namespace: wait for the link, then run the monitor, TLS terminator and DNS server."""
    _quiet_namespace()
    print("namespace", flush=True)
    sys.stdin.readline()  # the agent's side has moved our end of the veth pair in
    _no_offload("vb")
    _ip("addr", "add", f"{SERVER_IP}/24", "dev", "vb")
    _ip("link", "set", "vb", "up")
    _ip("neigh", "replace", CLIENT_IP, "lladdr", CLIENT_MAC, "dev", "vb", "nud", "permanent")
    config = os.path.join(tmp, "monitor.toml")
    with open(config, "w", encoding="utf-8") as f:
        f.write(monitor_config_text(port=80, data_dir=os.path.join(tmp, "monitor-data"),
                                    devices=[("home", TOKEN, 300.0, 0)]).replace("127.0.0.1:80", f"{SERVER_IP}:80"))
    dns = DnsServer(SERVER_IP, HOST)
    monitor = MonitorProcess(config, 80, log_path=os.path.join(tmp, "monitor.log"))
    monitor.base_url = f"http://{SERVER_IP}:80"
    with monitor:
        monitor.start()
        proxy = TlsTerminator((SERVER_IP, 443), (SERVER_IP, 80), os.path.join(tmp, "server.pem"))
        print("ready", flush=True)
        sys.stdin.read()  # until the agent's side closes it
        proxy.close()
    print(json.dumps({"first_exchange": proxy.first, "dns_queries": dns.queries}), flush=True)
    return None


class TlsTerminator:
    """TLS on ``listen``, each connection forwarded in plain text to ``upstream``; notes the first exchange.

    ``first`` holds the plain text sizes of the first connection: the request
    head and body the client sent, the response head and body it got back.
    Closes with a TLS close_notify, as a web server in front of the monitor would.
    """

    def __init__(self, listen, upstream, pem):
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(pem)
        self._upstream = upstream
        self._sock = socket.create_server(listen)
        self.first = None
        self._closing = False
        threading.Thread(target=self._accept, daemon=True, name="tls accept").start()

    def _accept(self):
        while not self._closing:
            try:
                raw, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True, name="tls connection").start()

    def _serve(self, raw):
        sent, got = bytearray(), bytearray()
        try:
            tls = self._context.wrap_socket(raw, server_side=True)
            up = socket.create_connection(self._upstream)
        except OSError:
            raw.close()
            return
        with up:
            tls.settimeout(5)
            peer = {tls: up, up: tls}
            done = False
            while not done:
                ready, _, _ = select.select([tls, up], [], [], 30)
                if not ready:
                    break
                for s in ready:
                    try:
                        data = s.recv(65536)
                        while s is tls and data and tls.pending():  # TLS records already decrypted: select misses them
                            data += tls.recv(tls.pending())
                    except OSError:
                        data = b""
                    if not data:  # either end closed: the exchange is over (the monitor closes after its answer)
                        done = True
                        break
                    (sent if s is tls else got).extend(data)
                    peer[s].sendall(data)
        try:
            tls.unwrap()
        except (OSError, ssl.SSLError, ValueError):
            pass
        tls.close()
        if self.first is None and sent:
            self.first = {**_split("request", bytes(sent)), **_split("response", bytes(got))}

    def close(self):
        self._closing = True
        self._sock.close()


def _split(what, data):
    head, _, body = data.partition(b"\r\n\r\n")
    return {f"{what}_head_bytes": len(head) + 4, f"{what}_body_bytes": len(body),
            f"{what}_head": head.decode("latin-1")}


class DnsServer:
    """A UDP DNS server on ``address``:53 that answers A queries for ``name`` with ``address``.

    AAAA (and any other type) for ``name``: the name exists with no such
    record (NOERROR, no answer), as for a monitor without IPv6.
    """

    def __init__(self, address, name):
        self._address = socket.inet_aton(address)
        self._name = name.encode()
        self.queries = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((address, 53))
        threading.Thread(target=self._serve, daemon=True, name="dns").start()

    def _serve(self):
        while True:
            query, peer = self._sock.recvfrom(512)
            self.queries += 1
            if len(query) >= 17:
                self._sock.sendto(self._answer(query), peer)

    def _answer(self, query):
        qid, flags = struct.unpack("!HH", query[:4])
        end = 12
        while query[end]:
            end += 1 + query[end]
        question = query[12:end + 5]
        qtype = struct.unpack("!H", query[end + 1:end + 3])[0]
        rd = flags & 0x0100
        if qtype != 1:
            return struct.pack("!HHHHHH", qid, 0x8480 | rd, 1, 0, 0, 0) + question
        record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + self._address
        return struct.pack("!HHHHHH", qid, 0x8480 | rd, 1, 1, 0, 0) + question + record


# -- the agent's side -----------------------------------------------------------------------------------------

def _client_side(tmp, beats):
    """In fresh network and mount namespaces: make the link and the monitor's side, measure, write result.json."""
    import trustme

    _quiet_namespace()
    _private_file(tmp, "/etc/hosts", "127.0.0.1 localhost\n")
    _private_file(tmp, "/etc/resolv.conf", f"nameserver {SERVER_IP}\noptions attempts:1\n")
    ca = trustme.CA()
    ca_file = os.path.join(tmp, "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    leaf = ca.issue_cert(HOST)
    leaf.private_key_and_cert_chain_pem.write_to_path(os.path.join(tmp, "server.pem"))
    chain_der = [len(ssl.PEM_cert_to_DER_cert(pem.bytes().decode())) for pem in leaf.cert_chain_pems]
    payload = _time_payload()
    server = subprocess.Popen(["unshare", "--net", sys.executable, "-m", "bench.wire", "--server-side", tmp],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if server.stdout.readline().strip() != "namespace":
            raise RuntimeError("the monitor's side did not start")
        _ip("link", "add", "va", "address", CLIENT_MAC, "type", "veth", "peer", "name", "vb", "address", SERVER_MAC,
            "netns", str(server.pid))
        offload = _no_offload("va")  # and the monitor's side does the same for its end
        _ip("addr", "add", f"{CLIENT_IP}/24", "dev", "va")
        _ip("link", "set", "va", "up")
        _ip("neigh", "replace", SERVER_IP, "lladdr", SERVER_MAC, "dev", "va", "nud", "permanent")
        server.stdin.write("go\n")
        server.stdin.flush()
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("the monitor's side did not get ready")
        result = measure(beats, payload, ca_file)
        result["offload_off"] = offload
        result["certificate_chain_der_bytes"] = chain_der
    finally:
        server.stdin.close()
        tail = server.stdout.read()
        server.wait(timeout=30)
    try:
        server_said = json.loads(tail.strip().splitlines()[-1])
    except (ValueError, IndexError):
        server_said = {"server_side_said": tail[-2000:]}
    result.update(server_said)
    with open(os.path.join(tmp, "result.json"), "w", encoding="utf-8") as f:
        json.dump(result, f)
    return result


def _time_payload():
    """The clock check's summary a beat carries, from a real check of 4 NTP responders on this loopback."""
    from appliance.clock import SystemClock
    from appliance.config.schema import Time
    from appliance.timecheck.checker import TimeChecker
    from appliance.timecheck.loopback import FakeNtpServer

    responders = [FakeNtpServer(skew_s=s).start() for s in (0.0, 0.0004, -0.0004, 0.0002)]
    try:
        checker = TimeChecker(Time(servers=tuple(r.spec for r in responders)), clock=SystemClock(), data_dir=None)
        return checker.check_now().as_payload()
    finally:
        for r in responders:
            r.stop()


def measure(beats, time_payload, ca_file):
    """Every case's link counters per beat; see the module docstring."""
    import requests

    from appliance.agent import transport
    from appliance.agent.system import read_boot_id, read_uptime_s
    from appliance.agent.targets import Beat, build_request
    from appliance.config.schema import Target

    started = time.time()
    seq = iter(range(1, 10**6))

    def request(scheme):
        target = Target(url=f"{scheme}://{HOST}/api/v1/heartbeat", token=TOKEN)
        now = time.time()
        beat = Beat(device="home", sent_at=now, seq=next(seq), boot_id=read_boot_id(), uptime_s=read_uptime_s(),
                    agent_started_at=started, previous_rtt_ms=12.3, time=time_payload)
        return build_request(target, beat)

    idle = _count(lambda: time.sleep(2.0))
    result = {"idle_2s": idle, "cases": []}
    resolver = transport.Resolver()
    dns = _count(lambda: [resolver.resolve(HOST, 443, timeout_s=5) for _ in range(beats)])
    result["dns_per_lookup"] = _per(dns, beats)
    for scheme in ("http", "https"):
        method, url, headers, body = request(scheme)
        result.setdefault("request_body_bytes", len(body))
        result.setdefault("request_body", json.loads(body))

        def fresh():
            for _ in range(beats):
                m, u, h, b = request(scheme)
                answer = transport.send(m, u, headers=h, body=b, timeout_s=10, resolver=resolver, ca_file=ca_file)
                if answer.status != 200:
                    raise RuntimeError(f"the monitor answered {answer.status}: {answer.body[:200]!r}")

        result["cases"].append({"scheme": scheme, "reuse": False, **_per(_count(fresh), beats)})
        session = requests.Session()
        session.trust_env = False

        def one():
            m, u, h, b = request(scheme)
            h = {k: v for k, v in h.items() if k != "Connection"}  # requests keeps the connection alive
            answer = session.request(m, u, headers=h, data=b, timeout=10, verify=ca_file)
            if answer.status_code != 200:
                raise RuntimeError(f"the monitor answered {answer.status_code}")

        first = _count(one)
        steady = _count(lambda: [one() for _ in range(beats)])
        close = _count(session.close)
        result["cases"].append({"scheme": scheme, "reuse": True, **_per(steady, beats), "first_beat": first,
                                "close": close})
    return result


def _count(action):
    """Run ``action``; return the link's counters it caused (both directions), after SETTLE_S."""
    before = _link("va")
    action()
    time.sleep(SETTLE_S)
    after = _link("va")
    delta = {k: after[k] - before[k] for k in after}
    packets = delta["rx_packets"] + delta["tx_packets"]
    link = delta["rx_bytes"] + delta["tx_bytes"]
    return {"packets": packets, "link_bytes": link, "ip_bytes": link - LINK_HEADER_BYTES * packets,
            "up_ip_bytes": delta["tx_bytes"] - LINK_HEADER_BYTES * delta["tx_packets"],
            "down_ip_bytes": delta["rx_bytes"] - LINK_HEADER_BYTES * delta["rx_packets"],
            "up_packets": delta["tx_packets"], "down_packets": delta["rx_packets"]}


def _per(counts, n):
    return {k: v / n for k, v in counts.items()}


def _link(device):
    with open("/proc/net/dev", encoding="utf-8") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == device:
                v = [int(x) for x in rest.split()]
                return {"rx_bytes": v[0], "rx_packets": v[1], "tx_bytes": v[8], "tx_packets": v[9]}
    raise RuntimeError(f"no {device} in /proc/net/dev")


# -- namespaces --------------------------------------------------------------------------------------------

def _quiet_namespace():
    """Loopback up, IPv6 off (no router or neighbour discovery on the link); refuse to go on outside a fresh one."""
    interfaces = [name for _, name in socket.if_nameindex()]
    if interfaces != ["lo"]:
        raise SystemExit(f"not in a fresh network namespace (interfaces {interfaces}); refusing to go on")
    for name in ("all", "default"):
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w", encoding="utf-8") as f:
            f.write("1\n")
    _ip("link", "set", "lo", "up")


def _private_file(tmp, path, text):
    """Bind-mount a file of ``text`` over ``path`` in this mount namespace only."""
    own = os.path.join(tmp, os.path.basename(path))
    with open(own, "w", encoding="utf-8") as f:
        f.write(text)
    subprocess.run(["mount", "--bind", own, path], check=True)
    with open(path, encoding="utf-8") as f:
        if f.read() != text:
            raise SystemExit(f"{path} was not replaced; refusing to go on")


def _no_offload(device):
    """One packet per segment, as on a real link: no segmentation offload (GSO/TSO). True when it worked."""
    done = subprocess.run(["ip", "link", "set", "dev", device, "gso_max_segs", "1"], capture_output=True)
    return done.returncode == 0


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


# -- the report ----------------------------------------------------------------------------------------------

def _daily(per_beat_bytes, interval_s=DEFAULT_INTERVAL_S):
    day = per_beat_bytes * 86400 / interval_s
    return f"{day / 1e6:.2f} MB/day, {day * 30 / 1e6:.0f} MB/30 days"


def report(result):
    """The printed table and notes."""
    rows = []
    for c in result["cases"]:
        how = "one kept-alive connection" if c["reuse"] else "new connection each (the agent)"
        rows.append([f"{c['scheme']}, {how}", f"{c['up_packets']:.1f} + {c['down_packets']:.1f}",
                     f"{c['up_ip_bytes']:,.0f}",
                     f"{c['down_ip_bytes']:,.0f}", f"{c['ip_bytes']:,.0f}", _daily(c["ip_bytes"])])
    d = result["dns_per_lookup"]
    rows.append(["  of which: DNS lookup (A + AAAA, UDP)", f"{d['up_packets']:.1f} + {d['down_packets']:.1f}",
                 f"{d['up_ip_bytes']:,.0f}",
                 f"{d['down_ip_bytes']:,.0f}", f"{d['ip_bytes']:,.0f}", ""])
    lines = [table(["per heartbeat", "packets up + down", "IP bytes up", "IP bytes down", "IP bytes", "at one beat a minute"],
                   rows)]
    for c in result["cases"]:
        if c["reuse"]:
            f, x = c["first_beat"], c["close"]
            lines.append(f"   {c['scheme']} with reuse: the first beat (DNS, connect{', TLS handshake' if c['scheme'] == 'https' else ''}) "
                         f"{f['ip_bytes']:,} B in {f['packets']} packets; closing the connection {x['ip_bytes']:,} B "
                         f"in {x['packets']} packets")
    first = result.get("first_exchange") or {}
    if first:
        lines.append(f"   the request: {first['request_head_bytes']} B of headers + {first['request_body_bytes']} B of "
                     f"JSON body; the answer: {first['response_head_bytes']} B of headers + "
                     f"{first['response_body_bytes']} B of body (plain text, before TLS)")
        lines.append("   request headers: " + " | ".join(first["request_head"].split("\r\n")))
        lines.append("   response headers: " + " | ".join(first["response_head"].split("\r\n")))
    chain = result["certificate_chain_der_bytes"]
    lines.append(f"   the server's certificate chain: {len(chain)} certificate(s), {sum(chain):,} B (trustme: one ECDSA "
                 f"leaf, no intermediate). A public CA's chain (leaf + intermediate, often RSA) is commonly 2-3 KB, "
                 f"which every https handshake without reuse carries on top of these figures")
    idle = result["idle_2s"]
    lines.append(f"   link: veth, MTU 1500, segmentation offload off: {result['offload_off']}; idle for 2 s: "
                 f"{idle['packets']} packets; IP bytes = link bytes - {LINK_HEADER_BYTES} per packet; "
                 f"{result.get('dns_queries')} DNS queries answered")
    return "\n".join(lines)


def summary_rows(result):
    """Rows [figure, samples, measured, goal, met?] for ``python -m bench``'s summary table."""
    if "cases" not in result:
        return [["wire cost per heartbeat", "-", f"not measured: {result.get('error')}", "none set", "-"]]
    rows = []
    for c in result["cases"]:
        how = "kept-alive connection" if c["reuse"] else "new connection per beat (the agent)"
        rows.append([f"wire cost per heartbeat, {c['scheme']}, {how}", "averaged over the beats",
                     f"{c['ip_bytes']:,.0f} IP bytes in {c['packets']:.1f} packets; {_daily(c['ip_bytes'])}",
                     "none set", "-"])
    return rows


if __name__ == "__main__":
    main()
