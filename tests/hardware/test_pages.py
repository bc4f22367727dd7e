"""The OLED pages, drawn onto luma's ``dummy`` device and compared pixel for pixel with reference PNGs.

The references live in tests/hardware/reference/, one per case below and
size (128x64, 128x32). When a page's drawing changes on purpose, regenerate
them from the project root with

    .venv/bin/python -m tests.hardware.regenerate

which prints the files it changed, added or removed; then a person LOOKS at
every changed PNG (they are 1-bit and tiny: open them scaled up, e.g.
``python -c "from PIL import Image; im = Image.open(P); im.resize((im.width*4, im.height*4)).show()"``)
before committing them, since the comparison can only say that the picture
changed, not that it is still legible. A failing comparison saves the picture
it got next to the test's tmp_path and names it.

The drawing is deterministic on every machine: only bitmap fonts that ship
inside Pillow and luma.core, a fixed moment and a fixed-offset time zone.
"""

import datetime
import os

import pytest
from luma.core.device import dummy
from PIL import Image, ImageChops, ImageDraw

from appliance.status import Network, Peer, Setup, Snapshot
from hardware.pages import (
    ELLIPSIS,
    NETWORK,
    PAGES,
    PEER,
    SETUP,
    STATUS,
    TIME,
    Area,
    clean,
    fit,
    offset_text,
    pages_for,
    render,
)

REFERENCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference")
SIZES = ((128, 64), (128, 32))
AT = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC
# A fixed offset rather than a zone from the IANA database: the same on a machine without tzdata.
CEST = datetime.timezone(datetime.timedelta(hours=2), "CEST")
WIFI = Network(interface="wlan0", ip="192.168.1.23", wifi_ssid="HomeNet", wifi_signal_dbm=-61)
SETUP_CODE = Setup(code="K7QM-2XPW", url="http://phonehome.local/setup", claimed=False)


def snapshot(**changes):
    """A healthy appliance on Wi-Fi, 12 s after its last beat, with an unclaimed setup code; ``changes`` apply."""
    facts = {"at": AT, "device_name": "home", "configured": True, "heartbeat": "ok", "last_ok_at": AT - 12,
             "beats_sent": 5, "last_error": None, "network": WIFI, "time_verdict": "ok",
             "time_reason": "clock within 12 ms of 4 servers", "time_offset_ms": 12.3, "time_zone": "Europe/Berlin",
             "uptime_s": 3 * 86400 + 5 * 3600, "setup": SETUP_CODE}
    facts.update(changes)
    return Snapshot(**facts)


OK = snapshot()
DOWN = snapshot(heartbeat="failing", last_ok_at=AT - 1234, last_error="monitor.example.com: connection refused",
                network=Network(interface="eth0", ip="10.0.0.7"))
NO_NET = snapshot(network=Network(interface="eth0"))
NOT_SET_UP = snapshot(configured=False, heartbeat="off", last_ok_at=None, device_name="")
DRIFTING = snapshot(time_verdict="drifting", time_offset_ms=2345.0, time_reason="clock 2.3 s ahead of 3 servers")
CLAIMED = snapshot(setup=Setup(code="K7QM-2XPW", url="http://phonehome.local/setup", claimed=True))
PEER_UP = snapshot(setup=CLAIMED.setup, peers=(Peer("garage-pi", "up", AT - 40),))
PEER_DOWN = snapshot(setup=CLAIMED.setup, peers=(Peer("garage-pi", "up", AT - 40), Peer("attic", "down", AT - 720),
                                                 Peer("shed", "new", None)))

# (name, page, snapshot): each is drawn at every size in SIZES.
CASES = (
    ("status-ok", STATUS, OK),
    ("status-down", STATUS, DOWN),
    ("status-no-net", STATUS, NO_NET),
    ("status-setup", STATUS, NOT_SET_UP),
    ("network-wifi", NETWORK, OK),
    ("network-wired", NETWORK, DOWN),
    ("network-no-net", NETWORK, NO_NET),
    ("time-ok", TIME, OK),
    ("time-drifting", TIME, DRIFTING),
    ("setup-code", SETUP, OK),
    ("setup-claimed", SETUP, CLAIMED),
    ("peer-up", PEER, PEER_UP),
    ("peer-down", PEER, PEER_DOWN),
)


def reference_name(case, size):
    return f"{case}-{size[0]}x{size[1]}.png"


def shown_on_dummy(page, snap, size, **options):
    """The picture a luma dummy device holds after ``display()`` of the rendered page."""
    device = dummy(width=size[0], height=size[1], mode="1")
    device.display(render(page, snap, width=size[0], height=size[1], now_wall=AT, tz=CEST, **options))
    return device.image


def regenerate(directory=REFERENCE_DIR):
    """Write every reference PNG that differs from what the pages draw now; remove those no case makes.

    Returns [(status, file name)] with status "changed", "added" or "removed".
    """
    os.makedirs(directory, exist_ok=True)
    report, wanted = [], set()
    for case, page, snap in CASES:
        for size in SIZES:
            name = reference_name(case, size)
            wanted.add(name)
            path = os.path.join(directory, name)
            image = shown_on_dummy(page, snap, size)
            if os.path.exists(path):
                with Image.open(path) as old:
                    if old.mode == "1" and old.size == image.size and old.tobytes() == image.tobytes():
                        continue
                report.append(("changed", name))
            else:
                report.append(("added", name))
            image.save(path)
    for name in sorted(os.listdir(directory)):
        if name.endswith(".png") and name not in wanted:
            os.unlink(os.path.join(directory, name))
            report.append(("removed", name))
    return report


# -- the references ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("case,page,snap", CASES, ids=[c[0] for c in CASES])
def test_page_matches_its_reference(case, page, snap, size, tmp_path):
    name = reference_name(case, size)
    path = os.path.join(REFERENCE_DIR, name)
    assert os.path.exists(path), f"no reference {name}: run '.venv/bin/python -m tests.hardware.regenerate'"
    got = shown_on_dummy(page, snap, size)
    with Image.open(path) as reference:
        reference = reference.convert("1")
    assert got.size == reference.size
    diff = ImageChops.difference(got.convert("L"), reference.convert("L")).getbbox()
    if diff is not None:
        saved = tmp_path / name
        got.save(saved)
        pytest.fail(f"{name} differs from its reference in the box {diff}; got {saved}. If the change is meant, "
                    f"run '.venv/bin/python -m tests.hardware.regenerate' and look at the new picture")


def test_every_reference_belongs_to_a_case():
    wanted = {reference_name(case, size) for case, _, _ in CASES for size in SIZES}
    assert set(os.listdir(REFERENCE_DIR)) == wanted


def test_regenerate_reports_only_what_changed(tmp_path):
    assert {status for status, _ in regenerate(str(tmp_path))} == {"added"}
    assert regenerate(str(tmp_path)) == []
    first = reference_name(*CASES[0][:1], SIZES[0])
    Image.new("1", SIZES[0]).save(tmp_path / first)
    (tmp_path / "old-page-128x64.png").write_bytes(b"")
    assert regenerate(str(tmp_path)) == [("changed", first), ("removed", "old-page-128x64.png")]


# -- nothing leaves the screen ------------------------------------------------------------------------------

LONG = snapshot(device_name="a-very-long-device-name-that-goes-on", heartbeat="failing", last_ok_at=AT - 10 ** 8,
                last_error="https://monitor.example.com/api/v1/heartbeat: HTTP 503 Service Unavailable " * 3,
                network=Network(interface="wlx00e04c0a1b2c3d4e", ip="255.255.255.255",
                                wifi_ssid="Ünïcødé 🚀 network with a name of thirty-two", wifi_signal_dbm=-100),
                time_verdict="wrong-zone", time_reason="time zone is America/Argentina/ComodRivadavia, not UTC " * 2,
                time_offset_ms=-987_654_321.0, time_zone="America/Argentina/ComodRivadavia", uptime_s=10 ** 9,
                setup=Setup(code="WWWW-WWWW-WWWW", url="https://phonehome-appliance.example.com/setup/claim",
                            claimed=False))
EMPTY = snapshot(device_name="", heartbeat="unknown", last_ok_at=None, network=Network(), time_verdict="unknown",
                 time_reason="", time_offset_ms=None, time_zone=None, uptime_s=None, setup=None)
EXTREMES = (OK, DOWN, NO_NET, NOT_SET_UP, DRIFTING, CLAIMED, LONG, EMPTY)
MARGIN = 40


@pytest.mark.parametrize("size", SIZES + ((64, 128), (32, 128)), ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("page", sorted(PAGES))
def test_drawing_stays_inside_the_screen(page, size):
    # Drawn on a canvas larger than the screen, anything that would have been cut off shows up outside it.
    width, height = size
    for snap in EXTREMES:
        canvas = Image.new("1", (width + 2 * MARGIN, height + 2 * MARGIN))
        PAGES[page](ImageDraw.Draw(canvas), snap, Area(MARGIN, MARGIN, width - 1, height - 1), now_wall=AT, tz=CEST)
        box = canvas.getbbox()
        assert box is not None, f"{page} drew nothing for {snap}"
        assert MARGIN <= box[0] and MARGIN <= box[1], (page, size, box)
        # The last column and row stay free for the burn-in shift.
        assert box[2] <= MARGIN + width - 1 and box[3] <= MARGIN + height - 1, (page, size, box, snap)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("page", sorted(PAGES))
@pytest.mark.parametrize("shift", [(1, 0), (1, 1), (0, 1)])
def test_a_shifted_page_is_the_same_picture_moved(page, size, shift):
    for snap in EXTREMES:
        still = render(page, snap, width=size[0], height=size[1], now_wall=AT, tz=CEST)
        moved = render(page, snap, width=size[0], height=size[1], now_wall=AT, tz=CEST, shift=shift)
        expected = Image.new("1", size)
        expected.paste(still, shift)
        assert moved.tobytes() == expected.tobytes()


def test_render_gives_a_one_bit_image_of_the_size_asked():
    image = render(STATUS, OK, width=128, height=32, now_wall=AT)
    assert (image.mode, image.size) == ("1", (128, 32))


# -- what the pages say ---------------------------------------------------------------------------------------

def test_setup_page_is_in_the_rotation_only_until_the_code_is_claimed():
    assert pages_for(OK) == (STATUS, SETUP, NETWORK, TIME)
    assert pages_for(CLAIMED) == (STATUS, NETWORK, TIME)
    assert pages_for(snapshot(setup=None)) == (STATUS, NETWORK, TIME)
    assert pages_for(PEER_UP) == (STATUS, PEER, NETWORK, TIME)  # only when a peer is watched


def test_the_short_status_page_is_a_layout_of_its_own_not_a_crop():
    tall = render(STATUS, OK, width=128, height=64, now_wall=AT)
    short = render(STATUS, OK, width=128, height=32, now_wall=AT)
    assert short.tobytes() != tall.crop((0, 0, 128, 32)).tobytes()
    # The big word is smaller and both lines (beat, uptime) still fit.
    assert short.getbbox()[3] > 24


@pytest.mark.parametrize("text,width,shown", [
    ("phonehome.local", 128, "phonehome.local"),
    ("x" * 21, 127, "x" * 21),
    ("x" * 22, 127, "x" * 20 + ELLIPSIS),
    ("a long line", 48, "a long" + ELLIPSIS),
    ("wide", 5, ""),
])
def test_fit_cuts_text_to_the_pixels_it_has(text, width, shown):
    assert fit(text, width) == shown


def test_characters_the_font_lacks_are_shown_as_question_marks():
    assert clean("café 🚀\tnet") == "café ??net"


@pytest.mark.parametrize("offset_ms,text", [
    (None, "?"), (12.3, "+12 ms"), (-0.4, "0 ms"), (-7.6, "-8 ms"), (2345.0, "+2.3 s"), (-59_999.0, "-60.0 s"),
    (3_725_000.0, "+1 h 2 min"),
])
def test_offset_text(offset_ms, text):
    assert offset_text(offset_ms) == text


def test_the_lcd_font_is_luma_s_own_read_without_its_thread_pool():
    import threading

    from hardware.pages import _lcd_font
    before = threading.active_count()
    font = _lcd_font()
    assert threading.active_count() == before  # luma.core.legacy's import would start 4 threads
    from luma.core.legacy.font import LCD_FONT  # the reference: the same glyphs
    assert font == tuple(bytes(glyph) for glyph in LCD_FONT)
