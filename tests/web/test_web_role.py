"""The agent serves its page on web.listen and moves it when the setting changes, never losing it to a bad
address: real waitress servers on 127.0.0.1."""

import dataclasses
import socket
import time

import requests

from appliance.agent.role import AgentRole
from appliance.config import Web, load_config


def answers(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/login", timeout=2, allow_redirects=False).status_code < 500
    except requests.ConnectionError:
        return False


def with_listen(config, listen):
    return dataclasses.replace(config, web=Web(listen=listen))


def test_the_page_moves_with_web_listen_and_stays_when_the_new_address_is_taken(tmp_path, free_port):
    path = tmp_path / "phonehome.toml"
    first, second = free_port(), free_port()
    path.write_text(f'data_dir = "{tmp_path}"\n[time]\nservers = []\n[web]\nlisten = "127.0.0.1:{first}"\n')
    role = AgentRole(load_config(str(path)), config_path=str(path)).start()
    try:
        assert answers(first)
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            role.apply(with_listen(role.config, f"127.0.0.1:{busy.getsockname()[1]}"))
            assert role.web.listen == f"127.0.0.1:{first}" and answers(first)
        role.apply(with_listen(role.config, f"127.0.0.1:{second}"))
        assert answers(second)
        deadline = time.monotonic() + 5
        while answers(first) and time.monotonic() < deadline:  # the old one stops a moment later
            time.sleep(0.1)
        assert not answers(first)
        role.apply(with_listen(role.config, ""))
        assert role.web is None
    finally:
        role.stop()
