import base64
import re
import socket
import threading
import time

import pytest

from appliance.agent.transport import MAX_BODY_BYTES, Resolver, send
from appliance.errors import SendError


def timed(fn, *args, **kwargs):
    """(result or raised SendError, seconds taken)."""
    start = time.monotonic()
    try:
        result = fn(*args, **kwargs)
    except SendError as exc:
        result = exc
    return result, time.monotonic() - start


# --- answers come back as they are --------------------------------------------------------------

def test_any_http_status_is_returned_and_not_retried(server, resolver):
    server.reply_json(500, {"error": "database is locked"})
    response = send("POST", server.url + "/beat", headers={}, body=b"{}", timeout_s=2, resolver=resolver)
    assert response.status == 500
    assert response.body == b'{"error": "database is locked"}'
    assert response.headers["content-type"] == "application/json"
    assert 0 < response.elapsed_s < 2
    assert len(server.requests) == 1


def test_redirect_is_returned_not_followed(server, resolver):
    server.reply(302, headers={"Location": "/elsewhere"})
    response = send("GET", server.url + "/ping", headers={}, timeout_s=2, resolver=resolver)
    assert response.status == 302
    assert response.headers["location"] == "/elsewhere"
    assert [r.path for r in server.requests] == ["/ping"]


def test_body_read_is_capped(server, resolver):
    server.reply(200, b"y" * (3 * MAX_BODY_BYTES))
    response = send("GET", server.url, headers={}, timeout_s=2, resolver=resolver)
    assert len(response.body) == MAX_BODY_BYTES == 64 * 1024


def test_request_goes_to_resolved_address_with_real_host_header(server, resolver):
    response = send("GET", f"http://monitor.test:{server.port}/p?q=1", headers={"X-Test": "1"}, timeout_s=2,
                    resolver=resolver)
    assert response.status == 200
    [request] = server.requests
    assert request.headers["Host"] == f"monitor.test:{server.port}"
    assert request.path == "/p?q=1"
    assert request.headers["X-Test"] == "1"


def test_names_are_resolved_afresh_for_every_request(server, resolver, hosts):
    for _ in range(3):
        send("GET", f"http://monitor.test:{server.port}/", headers={}, timeout_s=2, resolver=resolver)
    assert hosts.calls == ["monitor.test"] * 3


# --- failures say what happened -----------------------------------------------------------------

def test_connection_refused(closed_port, resolver):
    with pytest.raises(SendError, match=rf"^connection refused by 127\.0\.0\.1:{closed_port}$"):
        send("GET", f"http://127.0.0.1:{closed_port}/", headers={}, timeout_s=2, resolver=resolver)


def test_next_address_is_tried_when_one_refuses(server, resolver, hosts):
    hosts.table["multi.test"] = ["127.0.0.2", "127.0.0.1"]  # the server listens on 127.0.0.1 only
    response = send("GET", f"http://multi.test:{server.port}/", headers={}, timeout_s=2, resolver=resolver)
    assert response.status == 200
    assert len(server.requests) == 1


def test_every_refusing_address_is_named(closed_port, resolver, hosts):
    hosts.table["multi.test"] = ["127.0.0.2", "127.0.0.1"]
    with pytest.raises(SendError) as caught:
        send("GET", f"http://multi.test:{closed_port}/", headers={}, timeout_s=2, resolver=resolver)
    assert str(caught.value) == (f"connection refused by 127.0.0.2:{closed_port}; "
                                 f"connection refused by 127.0.0.1:{closed_port}")


def test_dns_failure_names_the_host(resolver):
    with pytest.raises(SendError, match="^DNS lookup for monitor.example.com failed: Name or service not known$"):
        send("GET", "https://monitor.example.com/beat", headers={}, timeout_s=2, resolver=resolver)


def test_invalid_names_fail_without_asking_the_network():
    asked = []

    def real_but_recorded(*args, **kwargs):
        asked.append(args[0])
        return socket.getaddrinfo(*args, **kwargs)

    with pytest.raises(SendError, match="^DNS lookup for nonexistent.invalid failed: Name or service not known$"):
        send("GET", "http://nonexistent.invalid/", headers={}, timeout_s=2,
             resolver=Resolver(getaddrinfo=real_but_recorded))
    assert asked == []


@pytest.mark.parametrize("host", ["NAME.INVALID", "NAME.INVALID.", "x.invalid.", "Monitor.Invalid", "invalid.",
                                  "INVALID"])
def test_invalid_names_are_caught_in_any_case_and_fully_qualified(host):
    def no_lookup(*args, **kwargs):
        raise AssertionError(f"a real DNS lookup was attempted: getaddrinfo{args}")

    with pytest.raises(SendError, match=f"^DNS lookup for {re.escape(host)} failed: Name or service not known$"):
        Resolver(getaddrinfo=no_lookup).resolve(host, 443, timeout_s=2)


def test_names_that_only_contain_invalid_are_looked_up():
    asked = []

    def record(host, *args, **kwargs):
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.7", 443))]

    resolver = Resolver(getaddrinfo=record)
    for host in ("invalid.example.com", "notinvalid", "x.invalidx"):
        assert resolver.resolve(host, 443, timeout_s=2) == ("192.0.2.7",)
    assert asked == ["invalid.example.com", "notinvalid", "x.invalidx"]


def test_localhost_resolves_through_the_system(server):
    response = send("GET", f"http://localhost:{server.port}/", headers={}, timeout_s=2, resolver=Resolver())
    assert response.status == 200
    assert server.requests[0].headers["Host"] == f"localhost:{server.port}"


def test_silent_server_ends_within_the_budget(silent_server, resolver):
    error, took = timed(send, "GET", silent_server.url, headers={}, timeout_s=0.5, resolver=resolver)
    assert str(error) == "no answer from 127.0.0.1 within 0.5 s"
    assert 0.45 < took < 0.8


@pytest.mark.parametrize("headers_first", [False, True], ids=["dripping-headers", "dripping-body"])
def test_dripping_server_ends_within_the_budget(drip_server, resolver, headers_first):
    # A byte every 0.2 s never trips a 1 s read timeout; only the deadline ends this.
    dripper = drip_server(0.2, headers_first=headers_first)
    error, took = timed(send, "GET", dripper.url, headers={}, timeout_s=1.0, resolver=resolver)
    assert str(error) == "no answer from 127.0.0.1 within 1 s"
    assert took < 1.4


def test_dripping_tls_server_ends_within_the_budget(drip_server, resolver, ca_file):
    dripper = drip_server(0.2, headers_first=True, tls=True)
    error, took = timed(send, "GET", f"https://monitor.test:{dripper.port}/", headers={}, timeout_s=1.0,
                        resolver=resolver, ca_file=ca_file)
    assert str(error) == "no answer from monitor.test within 1 s"
    assert took < 1.4


def test_budget_includes_dns(silent_server, hosts):
    slow_table = hosts

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return slow_table(*args, **kwargs)

    error, took = timed(send, "GET", f"http://monitor.test:{silent_server.port}/", headers={}, timeout_s=0.5,
                        resolver=Resolver(getaddrinfo=slow))
    assert str(error) == "no answer from monitor.test within 0.5 s"
    assert took < 0.8


def test_a_header_http_forbids_is_reported_without_its_value(server, resolver):
    with pytest.raises(SendError) as caught:
        send("POST", server.url, headers={"Authorization": "Bearer s3cret\nX-Evil: 1"}, timeout_s=2,
             resolver=resolver)
    assert "s3cret" not in str(caught.value)
    assert str(caught.value).startswith("a request header holds characters HTTP does not allow")
    assert server.requests == []


# --- a hung resolver ----------------------------------------------------------------------------

class HungResolver:
    """getaddrinfo that hangs until released, then answers 127.0.0.1."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, host, port, *args, **kwargs):
        self.calls += 1
        self.release.wait(10)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


def test_hung_dns_is_bounded_and_never_piles_up_lookups(wait_for):
    hung = HungResolver()
    resolver = Resolver(getaddrinfo=hung)
    error, took = timed(send, "GET", "http://monitor.example.com/", headers={}, timeout_s=0.3, resolver=resolver)
    assert str(error) == "DNS lookup for monitor.example.com gave no answer within 0.3 s"
    assert 0.25 < took < 0.6

    error, took = timed(send, "GET", "http://monitor.example.com/", headers={}, timeout_s=0.3, resolver=resolver)
    assert str(error).startswith("DNS lookup for monitor.example.com is still hanging from an earlier attempt")
    assert took < 0.1
    assert hung.calls == 1

    hung.release.set()
    wait_for(lambda: not resolver._pending, what="the hung lookup to end")
    assert resolver.resolve("monitor.example.com", 80, timeout_s=1) == ("127.0.0.1",)
    assert hung.calls == 2  # a new lookup, not the old answer from a cache


def test_callers_at_the_same_time_share_one_lookup(hosts):
    def slow(*args, **kwargs):
        time.sleep(0.2)
        return hosts(*args, **kwargs)

    resolver = Resolver(getaddrinfo=slow)
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(resolver.resolve("monitor.test", 80, timeout_s=2)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [("127.0.0.1",)] * 3
    assert hosts.calls == ["monitor.test"]


def test_ip_literals_need_no_lookup(hosts):
    resolver = Resolver(getaddrinfo=hosts)
    assert resolver.resolve("127.0.0.1", 80, timeout_s=1) == ("127.0.0.1",)
    assert resolver.resolve("::1", 80, timeout_s=1) == ("::1",)
    assert hosts.calls == []


# --- TLS keeps the real host name ---------------------------------------------------------------

def test_tls_verifies_the_real_host_name_while_connecting_to_its_address(tls_server, resolver, ca_file):
    response = send("GET", f"https://monitor.test:{tls_server.port}/beat", headers={}, timeout_s=2,
                    resolver=resolver, ca_file=ca_file)
    assert response.status == 200
    assert tls_server.sni == ["monitor.test"]
    assert tls_server.requests[0].headers["Host"] == f"monitor.test:{tls_server.port}"


def test_tls_rejects_a_certificate_for_another_name(tls_server, resolver, ca_file):
    with pytest.raises(SendError, match="^TLS handshake with wrong.test failed: certificate verify failed: "
                                        r"Hostname mismatch, certificate is not valid for 'wrong.test'\.$"):
        send("GET", f"https://wrong.test:{tls_server.port}/", headers={}, timeout_s=2, resolver=resolver,
             ca_file=ca_file)
    assert tls_server.requests == []


def test_tls_rejects_an_unknown_authority(tls_server, resolver):
    with pytest.raises(SendError, match="^TLS handshake with monitor.test failed: certificate verify failed: "
                                        "unable to get local issuer certificate"):
        send("GET", f"https://monitor.test:{tls_server.port}/", headers={}, timeout_s=2, resolver=resolver)
    assert tls_server.requests == []


def test_an_address_that_drops_connections_leaves_time_for_the_next(server, resolver, hosts):
    # A listener whose accept queue is full drops new SYNs, like a broken IPv6 route at home.
    blackhole = socket.create_server(("127.0.0.2", server.port), backlog=0)
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.2", server.port))
        fillers.append(c)
    time.sleep(0.1)
    try:
        hosts.table["dual.test"] = ["127.0.0.2", "127.0.0.1"]
        response, took = timed(send, "GET", f"http://dual.test:{server.port}/", headers={}, timeout_s=2,
                               resolver=resolver)
        assert not isinstance(response, SendError), response
        assert response.status == 200 and took < 2
    finally:
        for c in fillers:
            c.close()
        blackhole.close()


def test_a_user_and_password_in_the_url_go_as_basic_auth(server, resolver):
    send("GET", f"http://beat%40home:p%3Ass@127.0.0.1:{server.port}/ping", headers={}, timeout_s=2, resolver=resolver)
    expected = "Basic " + base64.b64encode(b"beat@home:p:ss").decode("ascii")
    assert server.requests[0].headers["Authorization"] == expected
    send("GET", f"http://u:p@127.0.0.1:{server.port}/", headers={"Authorization": "Bearer t"}, timeout_s=2,
         resolver=resolver)
    assert server.requests[1].headers["Authorization"] == "Bearer t"  # the caller's own header wins


def test_a_path_and_query_with_spaces_and_accents_are_percent_encoded(server, resolver):
    send("GET", f"http://127.0.0.1:{server.port}/ping/caf\u00e9 1?note=d\u00e9j\u00e0 vu&x=%2F", headers={},
         timeout_s=2, resolver=resolver)
    assert server.requests[0].path == "/ping/caf%C3%A9%201?note=d%C3%A9j%C3%A0%20vu&x=%2F"
