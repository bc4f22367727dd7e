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
  request gets a fresh session (once a minute, connection reuse is not worth
  a stale DNS answer).

HTTP statuses are not judged here: any answer is returned as a ``Response``;
``targets.judge`` decides what it means.
"""

import functools
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.ssl_match_hostname import CertificateError

from appliance.errors import SendError

MAX_BODY_BYTES = 64 * 1024
_CHUNK_BYTES = 4096
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Response:
    """An HTTP answer, whatever its status.

    ``body`` holds at most MAX_BODY_BYTES (decoded if the server compressed
    it); ``elapsed_s`` is the whole request's duration, DNS included;
    ``headers`` has lower-case names.
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
    verification is always on. Raises SendError with a message a person can
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
            return _send_to(address, method, parts, host, port, headers, body, started=started,
                            deadline=deadline, connect_s=connect_s, timeout_s=timeout_s, ca_file=ca_file)
        except _NotConnected as exc:
            # Nothing was sent, so trying the host's next address cannot deliver twice.
            problems.append(str(exc))
    if not problems:
        raise SendError(f"no answer from {host} within {timeout_s:g} s")
    raise SendError("; ".join(problems))


class _NotConnected(Exception):
    """No connection to this address; the request was not sent."""


def _send_to(address, method, parts, host, port, headers, body, *, started, deadline, connect_s, timeout_s,
             ca_file):
    watchdog = _Watchdog()
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), watchdog.fire)
    timer.daemon = True
    timer.start()
    session = requests.Session()
    session.trust_env = False  # no proxies, CA bundle or .netrc credentials picked up from the environment
    tls_hostname = host if parts.scheme == "https" and not _is_ip(host) else None
    session.mount(f"{parts.scheme}://", _PinnedAdapter(watchdog, tls_hostname=tls_hostname))
    pinned = urlunsplit((parts.scheme, _netloc(parts, address, port), parts.path or "/", parts.query, ""))
    headers = {**headers, "Host": _host_header(host, parts), "Connection": "close"}
    try:
        remaining = max(0.001, deadline - time.monotonic())
        answer = session.request(method, pinned, headers=headers, data=body,
                                 timeout=(min(connect_s, remaining), remaining),
                                 stream=True, allow_redirects=False, verify=ca_file or True)
        watchdog.watch(answer.raw.shutdown)
        try:
            content = _read_body(answer, deadline)
        finally:
            answer.close()
        if watchdog.fired:
            raise TimeoutError("the deadline passed while reading the answer")
        return Response(status=answer.status_code, body=content, elapsed_s=time.monotonic() - started,
                        headers={k.lower(): v for k, v in answer.headers.items()})
    except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
        late = watchdog.fired or time.monotonic() >= deadline
        raise _explain(exc, host=host, address=address, port=port, timeout_s=timeout_s, late=late) from None
    finally:
        timer.cancel()
        session.close()


def _read_body(answer, deadline):
    chunks, size = [], 0
    for chunk in answer.iter_content(_CHUNK_BYTES):
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_BODY_BYTES:
            break  # a heartbeat answer is a few hundred bytes; more is not worth the wait or the memory
        if time.monotonic() >= deadline:
            raise TimeoutError("the deadline passed while reading the answer")
    return b"".join(chunks)[:MAX_BODY_BYTES]


def _explain(exc, *, host, address, port, timeout_s, late):
    """The SendError (or _NotConnected) a person can act on, for an exception from requests/urllib3."""
    if isinstance(exc, requests.exceptions.InvalidHeader):
        # requests quotes the offending value, which may be the token: keep it out of the logs.
        return SendError("a request header holds characters HTTP does not allow; "
                         "check the target's token for spaces or line breaks")
    chain = list(_causes(exc))
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    # requests raises ConnectTimeout only for a connection that timed out, not for one that was refused.
    if not late and any(isinstance(e, requests.exceptions.ConnectTimeout) for e in chain):
        return _NotConnected(f"cannot connect to {where}: no answer to the connection request")
    if late or any(_is_timeout(e) for e in chain):
        return SendError(f"no answer from {host} within {timeout_s:g} s")
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            detail = getattr(e, "verify_message", None) or (e.args[-1] if e.args else e)
            return SendError(f"TLS handshake with {host} failed: certificate verify failed: {detail}")
        if isinstance(e, CertificateError):  # urllib3's own check of the host name
            return SendError(f"TLS handshake with {host} failed: certificate verify failed: {e}")
        if isinstance(e, ssl.SSLError):
            return SendError(f"TLS handshake with {host} failed: {e.reason or e}")
    for e in chain:
        if isinstance(e, ConnectionRefusedError):
            return _NotConnected(f"connection refused by {where}")
    if any(isinstance(e, urllib3.exceptions.NewConnectionError) for e in chain):
        root = next((e for e in chain if isinstance(e, OSError) and e.strerror), None)
        reason = root.strerror if root is not None else "connection failed"
        return _NotConnected(f"cannot connect to {where}: {reason}")
    if any(isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError,
                          urllib3.exceptions.ProtocolError)) for e in chain):
        return SendError(f"{host} closed the connection without a complete answer")
    # Not str(exc): requests and urllib3 quote the URL, whose path may be a secret (a push URL's key).
    root = next((e for e in reversed(chain) if isinstance(e, OSError) and e.strerror), None)
    return SendError(f"request to {host} failed: {root.strerror if root else type(chain[-1]).__name__}")


def _causes(exc):
    """``exc`` and everything it wraps: requests and urllib3 nest the real error in args, reason and __cause__."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop(0)
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "reason", None), e.__cause__, e.__context__, *e.args]


def _is_timeout(e):
    if isinstance(e, urllib3.exceptions.NewConnectionError):
        return False  # urllib3 makes it a ConnectTimeoutError subclass for history's sake
    return isinstance(e, (TimeoutError, urllib3.exceptions.TimeoutError, requests.Timeout))


class _Watchdog:
    """Wakes every blocked read of one request when the deadline passes.

    Each part of the request registers a callable that shuts its socket:
    the connection while the request is sent and the headers are read, then
    the response (urllib3's HTTPResponse.shutdown) while the body is read,
    since by then the connection may have handed its socket over. A socket
    still connecting when it fires is bounded by the connect timeout, which
    is the remaining budget.
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
        pass  # already closed or released: nothing left to wake


def _shut_connection(connection):
    sock = connection.sock
    if sock is not None:
        # The base method: SSLSocket.shutdown would also drop the TLS object
        # under the feet of the thread reading from it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watched:
    """Connection-pool mixin: hands each new connection to the request's watchdog."""

    watchdog = None

    def _new_conn(self):
        connection = super()._new_conn()
        self.watchdog.watch(functools.partial(_shut_connection, connection))
        return connection


class _WatchedHTTPPool(_Watched, HTTPConnectionPool):
    pass


class _WatchedHTTPSPool(_Watched, HTTPSConnectionPool):
    pass


class _WatchedPoolManager(PoolManager):
    def __init__(self, watchdog, **kwargs):
        super().__init__(**kwargs)
        self.watchdog = watchdog
        self.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}

    def _new_pool(self, scheme, host, port, request_context=None):
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.watchdog = self.watchdog
        return pool


class _PinnedAdapter(HTTPAdapter):
    """Connects to an address resolved beforehand; for https, SNI and verification use ``tls_hostname``."""

    def __init__(self, watchdog, *, tls_hostname=None):
        self._watchdog = watchdog  # set before super().__init__, which calls init_poolmanager
        self._tls_hostname = tls_hostname
        super().__init__(max_retries=0, pool_connections=1, pool_maxsize=1)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        self._pool_connections, self._pool_maxsize, self._pool_block = connections, maxsize, block
        if self._tls_hostname:
            # https pools only: urllib3 rejects these keywords for plain http.
            pool_kwargs.update(server_hostname=self._tls_hostname, assert_hostname=self._tls_hostname)
        self.poolmanager = _WatchedPoolManager(self._watchdog, num_pools=connections, maxsize=maxsize,
                                               block=block, **pool_kwargs)


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


def _netloc(parts, address, port):
    userinfo, at, _ = parts.netloc.rpartition("@")
    bracketed = f"[{address}]" if ":" in address else address
    return f"{userinfo}{at}{bracketed}:{port}"


def _host_header(host, parts):
    bracketed = f"[{host}]" if ":" in host else host
    if parts.port is None or parts.port == _DEFAULT_PORTS[parts.scheme]:
        return bracketed
    return f"{bracketed}:{parts.port}"
