"""A real appliance behind its web page: an AgentRole on a config file in tmp_path, running (with no network
targets), and Flask's test client on its app. CSRF protection stays on: ``Browser.post`` sends the token a page
gave it, as a browser does."""

import re

import pytest

from appliance.agent.role import AgentRole
from appliance.config import load_config
from appliance.setup import load_setup
from web import create_agent_app

PASSWORD = "correct horse battery"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
_FORM = re.compile(r"<form([^>]*)>(.*?)</form>", re.S)
_ACTION = re.compile(r'action="([^"]*)"')
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')

BASE_CONFIG = """\
data_dir = "{data_dir}"
[time]
servers = []
[web]
listen = ""
"""


class Browser:
    """Flask's test client with the manners of a browser: it keeps the CSRF token the last page gave it."""

    def __init__(self, client):
        self.client = client
        self.token = None

    def get(self, url, **kwargs):
        response = self.client.get(url, **kwargs)
        found = _TOKEN.search(response.get_data(as_text=True))
        if found:
            self.token = found.group(1)
        return response

    def post(self, url, data=None, *, page=None, **kwargs):
        """POST a form as a browser would from ``page`` (default: ``url`` itself, fetched first): with the CSRF
        token and the hidden fields of the page's form that posts to ``url``."""
        html = self.get(page or url).get_data(as_text=True)
        sent = dict(self._hidden_fields(html, url, own_page=page is None))
        sent.setdefault("csrf_token", self.token)
        sent.update(data or {})
        return self.client.post(url, data=sent, **kwargs)

    @staticmethod
    def _hidden_fields(html, url, *, own_page):
        for form in _FORM.finditer(html):
            action = _ACTION.search(form.group(1))
            if (action.group(1) if action else None) == url or (own_page and action is None):
                return _HIDDEN.findall(form.group(2))
        return []


class Appliance:
    def __init__(self, tmp_path, text):
        self.dir = tmp_path
        self.data_dir = str(tmp_path / "data")
        self.config_path = str(tmp_path / "phonehome.toml")
        with open(self.config_path, "w") as f:
            f.write(BASE_CONFIG.format(data_dir=self.data_dir) + text)
        self.role = AgentRole(load_config(self.config_path), config_path=self.config_path).start()
        self.reboots = []
        self.app = create_agent_app(self.role, reboot=lambda: self.reboots.append(True))

    def browser(self):
        return Browser(self.app.test_client())

    @property
    def setup_code(self):
        return load_setup(self.data_dir).code

    def claimed_browser(self):
        """A browser that claimed the appliance and is logged in."""
        browser = self.browser()
        response = browser.post("/setup", {"code": self.setup_code, "password": PASSWORD,
                                           "password_again": PASSWORD})
        assert response.status_code == 302, response.get_data(as_text=True)
        return browser


@pytest.fixture
def appliance_factory(tmp_path):
    made = []

    def make(text=""):
        appliance = Appliance(tmp_path, text)
        made.append(appliance)
        return appliance

    yield make
    for appliance in made:
        appliance.role.stop()


@pytest.fixture
def appliance(appliance_factory):
    """An unconfigured appliance, as on first boot (no targets, no display)."""
    return appliance_factory()
