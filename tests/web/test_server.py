"""The waitress wrapper: it serves, it stops at once, and it leaves no thread or socket behind."""

import threading

import requests
from flask import Flask

from web.server import HttpServer


def app():
    a = Flask("echo")

    @a.post("/")
    def echo():
        return "ok"

    return a


def test_stop_ends_every_thread_and_frees_the_port(free_port):
    port = free_port()
    before = {t.ident for t in threading.enumerate()}
    for _ in range(3):  # the same port again each time: the socket was really closed
        server = HttpServer(app(), f"127.0.0.1:{port}").start()
        assert requests.post(f"http://127.0.0.1:{port}/", data=b"x", timeout=2).text == "ok"
        server.stop()
        server.stop()  # idempotent
    assert {t.ident for t in threading.enumerate()} - before == set()
