"""One bounded HTTP request: DNS, connect, TLS, request and answer all end within ``timeout_s``.

The heartbeat must never hang, whatever the network does, so:

* host names are resolved afresh for every request (no cache: a cache that
  ignored TTLs once stalled the product author's mail server for days) by a
  ``Resolver`` whose lookups run in a daemon thread the caller waits on for at
  most the remaining budget;
* the request goes to the resolved address, while the Host header, TLS SNI
  and certificate verification keep using the real host name;
* a watchdog shuts the socket at the deadline, because per-read timeouts alone
  let a server that drips one byte a second hold a request forever;
* there are no retries, redirects are returned rather than followed, and each
  request gets a fresh connection (once a minute, connection reuse is not
  worth a stale DNS answer).

It is built on the standard library's http.client and ssl, not requests: the
agent sends one small request a minute, and requests with urllib3 and its
character-set detection added about 7 MiB to the agent's resident memory.

HTTP statuses are not judged here: any answer is returned as a ``Response``;
``targets.judge`` decides what it means.
"""

import base64
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from appliance.errors import SendError

MAX_BODY_BYTES = 64 * 1024
_CHUNK_BYTES = 4096
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Response:
    """An HTTP answer, whatever its status.

    ``body`` holds at most MAX_BODY_BYTES, as sent (the request asks for no
    compression); ``elapsed_s`` is the whole request's duration, DNS
    included; ``headers`` has lower-case names.
    """

    status: int
    body: bytes
    elapsed_s: float
    headers: dict = field(default_factory=dict)


class _Lookup:
    """One getaddrinfo call in flight, shared by every caller asking for the same (host, port)."""

    def __init__(self, started_mono, deadline_mono):
        self.started_mono = started_mono
        self.deadline_mono = deadline_mono
        self.done = threading.Event()
        self.addresses = ()
        self.error = None


class Resolver:
    """Resolves host names afresh for every request, never waiting past the caller's budget.

    getaddrinfo cannot be interrupted, so each lookup runs in a daemon thread.
    At most one lookup per (host, port) is outstanding: a caller that arrives
    while one is under way waits for its answer, and one that arrives after
    that lookup outlived its first caller's deadline fails at once. A hung
    resolver therefore holds one thread per name, not one more every minute.

    ``getaddrinfo`` and ``monotonic`` are injectable for tests.
    """

    def __init__(self, *, getaddrinfo=socket.getaddrinfo, monotonic=time.monotonic):
        self._getaddrinfo = getaddrinfo
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._pending = {}

    def resolve(self, host, port, *, timeout_s):
        """The IPv4/IPv6 addresses of ``host`` as strings, in the order the system prefers.

        An IP literal is returned as is, without a lookup. Raises SendError
        when the lookup fails, gives no answer within ``timeout_s`` seconds, or
        an earlier lookup of the same name is still hanging.
        """
        if _is_ip(host):
            return (host,)
        name = host.rstrip(".").lower()  # DNS names ignore case; "x.invalid." is the same name, fully qualified
        if name == "invalid" or name.endswith(".invalid"):
            # RFC 6761 6.4: resolvers should answer "no such name" for .invalid
            # themselves; glibc asks the DNS server, so we do it here.
            raise SendError(f"DNS lookup for {host} failed: Name or service not known")
        key = (host, port)
        now = self._monotonic()
        with self._lock:
            lookup = self._pending.get(key)
            if lookup is None:
                lookup = self._pending[key] = _Lookup(now, now + timeout_s)
                threading.Thread(target=self._run, args=(key, lookup), name=f"dns {host}", daemon=True).start()
            elif now >= lookup.deadline_mono:
                raise SendError(f"DNS lookup for {host} is still hanging from an earlier attempt "
                                f"({now - lookup.started_mono:.0f} s ago); the system's resolver is not answering "
                                f"(check the network and /etc/resolv.conf)")
        if not lookup.done.wait(timeout_s):
            raise SendError(f"DNS lookup for {host} gave no answer within {timeout_s:g} s")
        if lookup.error:
            raise SendError(f"DNS lookup for {host} failed: {lookup.error}")
        return lookup.addresses

    def _run(self, key, lookup):
        host, port = key
        try:
            infos = self._getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = tuple(dict.fromkeys(
                info[4][0] for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)))
            if addresses:
                lookup.addresses = addresses
            else:
                lookup.error = "no IPv4 or IPv6 address"
        except socket.gaierror as exc:
            lookup.error = exc.strerror or str(exc)
        except Exception as exc:  # noqa: BLE001 - this thread's only way to report is through ``lookup``
            lookup.error = str(exc) or type(exc).__name__
        finally:
            with self._lock:
                if self._pending.get(key) is lookup:
                    del self._pending[key]
            lookup.done.set()


def send(method, url, *, headers, body=None, timeout_s, resolver, ca_file=None):
    """Make one HTTP request and return its Response, whatever the HTTP status.

    ``headers`` is a dict; ``body`` bytes or None. The whole call, DNS
    included, ends within about ``timeout_s`` seconds. ``ca_file`` replaces
    the system's certificate authorities (tests use a private CA);
    verification is always on. A user and password in the URL are sent as
    HTTP basic authentication. Raises SendError with a message a person can
    act on when no HTTP answer arrives: DNS failure, refused connection, no
    answer in time, TLS failure, dropped connection.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise SendError(f"cannot send to a {parts.scheme or 'schemeless'} URL: it must start with http:// or https://")
    host = _ascii_host(parts.hostname)
    port = parts.port or _DEFAULT_PORTS[parts.scheme]
    request = _Request(method, _target(parts), _headers(headers, host, parts), body)
    tls = _tls_context(ca_file) if parts.scheme == "https" else None
    addresses = resolver.resolve(host, port, timeout_s=timeout_s)
    problems = []
    for i, address in enumerate(addresses):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        # Each address gets its share of the time to connect, so one that drops packets (broken IPv6 at
        # home is common) cannot use up the whole budget before the next one is tried.
        connect_s = left / (len(addresses) - i)
        try:
            return _send_to(address, port, host, request, tls, started=started, deadline=deadline,
                            connect_s=connect_s, timeout_s=timeout_s)
        except _NotConnected as exc:
            # Nothing was sent, so trying the host's next address cannot deliver twice.
            problems.append(str(exc))
    if not problems:
        raise SendError(f"no answer from {host} within {timeout_s:g} s")
    raise SendError("; ".join(problems))


@dataclass(frozen=True)
class _Request:
    method: str
    target: str  # path and query, as on the request line
    headers: dict
    body: bytes | None


class _NotConnected(Exception):
    """No connection to this address; the request was not sent."""


def _send_to(address, port, host, request, tls, *, started, deadline, connect_s, timeout_s):
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    watchdog = _Watchdog()
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), watchdog.fire)
    timer.daemon = True
    timer.start()
    sock = None
    try:
        sock = _connect(address, port, where, watchdog, timeout_s=min(connect_s, deadline - time.monotonic()))
        if tls is not None:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock = _handshake(tls, sock, host, watchdog)
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        connection = http.client.HTTPConnection(address, port)
        connection.sock = sock  # already connected (and wrapped): http.client only writes and reads it
        try:
            connection.request(request.method, request.target, body=request.body, headers=request.headers)
        except ValueError:
            # http.client quotes the offending value, which may be the token: keep it out of the logs.
            raise SendError("a request header holds characters HTTP does not allow; "
                            "check the target's token for spaces or line breaks") from None
        answer = connection.getresponse()
        content = _read_body(answer, deadline)
        if watchdog.fired:
            raise TimeoutError("the deadline passed while reading the answer")
        return Response(status=answer.status, body=content, elapsed_s=time.monotonic() - started,
                        headers={k.lower(): v for k, v in answer.getheaders()})
    except (http.client.HTTPException, OSError) as exc:
        late = watchdog.fired or time.monotonic() >= deadline
        raise _explain(exc, host=host, timeout_s=timeout_s, late=late) from None
    finally:
        timer.cancel()
        if sock is not None:
            _quietly(sock.close)


def _connect(address, port, where, watchdog, *, timeout_s):
    """A TCP connection to ``address``; raises _NotConnected when there is none (nothing was sent)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    watchdog.watch(lambda: socket.socket.shutdown(sock, socket.SHUT_RDWR))
    try:
        sock.settimeout(max(0.001, timeout_s))
        sock.connect((address, port))
    except ConnectionRefusedError:
        sock.close()
        raise _NotConnected(f"connection refused by {where}") from None
    except TimeoutError:
        sock.close()
        raise _NotConnected(f"cannot connect to {where}: no answer to the connection request") from None
    except OSError as exc:
        sock.close()
        if watchdog.fired:
            raise TimeoutError("the deadline passed while connecting") from None
        raise _NotConnected(f"cannot connect to {where}: {exc.strerror or exc}") from None
    return sock


def _handshake(tls, sock, host, watchdog):
    """``sock`` wrapped in TLS for ``host`` (SNI and the certificate check use the name, not the address)."""
    wrapped = tls.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    # The base method: SSLSocket.shutdown would also drop the TLS object under the feet of the reading thread.
    watchdog.watch(lambda: socket.socket.shutdown(wrapped, socket.SHUT_RDWR))
    wrapped.do_handshake()
    return wrapped


def _tls_context(ca_file):
    """A verifying client context: the system's authorities, or only those in ``ca_file``."""
    return ssl.create_default_context(cafile=ca_file)


def _target(parts):
    """The request line's path and query: spaces and other characters a request line cannot carry are
    percent-encoded (as UTF-8), and escapes already there are left as they are."""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return quote(target, safe="!#$%&'()*+,/:;=?@[]~")


def _headers(headers, host, parts):
    """The request's headers: the caller's, the real Host, basic auth from the URL, and no keep-alive."""
    out = {**headers, "Host": _host_header(host, parts), "Connection": "close"}
    if parts.username is not None and not any(k.lower() == "authorization" for k in headers):
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode("utf-8")
        out["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    return out


def _read_body(answer, deadline):
    chunks, size = [], 0
    while size < MAX_BODY_BYTES:  # a heartbeat answer is a few hundred bytes; more is not worth the wait
        chunk = answer.read1(_CHUNK_BYTES) if answer.chunked else answer.read(_CHUNK_BYTES)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if time.monotonic() >= deadline:
            raise TimeoutError("the deadline passed while reading the answer")
    return b"".join(chunks)[:MAX_BODY_BYTES]


def _explain(exc, *, host, timeout_s, late):
    """The SendError a person can act on, for an exception raised once a connection was made."""
    if late or isinstance(exc, TimeoutError):
        return SendError(f"no answer from {host} within {timeout_s:g} s")
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None) or (exc.args[-1] if exc.args else exc)
        return SendError(f"TLS handshake with {host} failed: certificate verify failed: {detail}")
    if isinstance(exc, ssl.SSLError):
        return SendError(f"TLS handshake with {host} failed: {exc.reason or exc}")
    if isinstance(exc, (http.client.RemoteDisconnected, http.client.IncompleteRead, ConnectionError)):
        return SendError(f"{host} closed the connection without a complete answer")
    if isinstance(exc, http.client.HTTPException):
        # Not str(exc): it may quote what the server sent.
        return SendError(f"{host} sent an answer that is not HTTP ({type(exc).__name__})")
    return SendError(f"request to {host} failed: {exc.strerror or type(exc).__name__}")


class _Watchdog:
    """Wakes every blocked read of one request when the deadline passes.

    The request registers a callable that shuts its socket (the TCP one,
    then the TLS one wrapping it); firing calls them all. A socket still
    connecting when it fires is bounded by the connect timeout, which is
    the remaining budget.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._shutters = []
        self.fired = False

    def watch(self, shut):
        with self._lock:
            self._shutters.append(shut)
            fired = self.fired
        if fired:
            _quietly(shut)

    def fire(self):
        with self._lock:
            self.fired = True
            shutters = list(self._shutters)
        for shut in shutters:
            _quietly(shut)


def _quietly(shut):
    try:
        shut()
    except (OSError, ValueError, RuntimeError):
        pass  # already closed: nothing left to wake


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _ascii_host(host):
    try:
        return host.encode("ascii").decode("ascii")
    except UnicodeEncodeError:
        try:
            return host.encode("idna").decode("ascii")
        except UnicodeError:
            raise SendError(f"{host!r} is not a valid host name; check the target URL") from None


def _host_header(host, parts):
    bracketed = f"[{host}]" if ":" in host else host
    if parts.port is None or parts.port == _DEFAULT_PORTS[parts.scheme]:
        return bracketed
    return f"{bracketed}:{parts.port}"
