"""What the OLED says: each page is a pure function from a status Snapshot to a drawing on a Pillow canvas.

Pages draw only with bitmap fonts that come with the libraries already
installed, so a frame comes out the same pixel for pixel on every machine (no
FreeType, no font files) and the reference images in tests/ stay valid: small
text in Pillow's built-in font (``load_default_imagefont``: 6 px a character,
21 to a line), big words in luma.core's 5x7 LCD font scaled up by whole
numbers, which stays crisp on a one-bit panel and keeps K, X, P and W
unmistakably capitals in a setup code. Layouts come in two heights: "tall" (64 px) and "short"
(32 px, fewer lines and smaller big words). Every string is cut to the width
it has, ending in "…", so nothing is ever drawn off the screen.

Pages leave the last column and row free: ``render`` moves the whole drawing
by a pixel now and then against burn-in, and nothing may be lost when it does.
"""

import datetime
import functools
import importlib.util
import os
from collections import namedtuple

from PIL import Image, ImageDraw, ImageFont

from appliance.timefmt import format_duration

STATUS, NETWORK, TIME, SETUP, PEER = "status", "network", "time", "setup", "peer"
HOSTNAME = "phonehome.local"

# The bitmap font's 6 x 11 cell holds ink in rows 2-10 (ascenders to descenders); lines are placed by
# the top of their ink, so a line at y uses rows y..y+8.
CHAR_W, INK_TOP, INK_ROWS = 6, 2, 9
ELLIPSIS = "…"
_TALL_MIN_H = 48

Area = namedtuple("Area", "x y width height")


@functools.cache
def _font():
    # Loaded on first use, not at import: importing the module costs nothing.
    return ImageFont.load_default_imagefont()


# -- text primitives -----------------------------------------------------------------------------------

def clean(text):
    """``text`` with what the bitmap font cannot draw (outside Latin-1, control characters) as '?'."""
    return "".join(c if c == ELLIPSIS or (c.isprintable() and ord(c) < 256) else "?" for c in str(text))


def fit(text, width_px):
    """``text`` (cleaned) cut to at most ``width_px`` pixels of the small font, ending in '…' when cut."""
    text = clean(text)
    room = max(0, width_px // CHAR_W)
    if len(text) <= room:
        return text
    return text[:room - 1].rstrip() + ELLIPSIS if room else ""


def small_text(draw, x, y, text, width_px):
    """Draw ``text`` in the small font with its ink top at row ``y``, cut to ``width_px``; return what was drawn."""
    shown = fit(text, width_px)
    # The font has no '…' (it is Latin-1): it is drawn as three dots on the baseline of a 6 px cell.
    for i, part in enumerate(shown.split(ELLIPSIS)):
        if i:
            dots_x = x - CHAR_W
            for dx in (0, 2, 4):
                draw.point((dots_x + dx, y + 6), fill=1)
        if part:
            draw.text((x, y - INK_TOP), part, font=_font(), fill=1)
        x += CHAR_W * (len(part) + 1)
    return shown


def small_centered(draw, area, y, text):
    """Draw ``text`` in the small font centred across ``area`` with its ink top at ``area.y + y``."""
    shown = fit(text, area.width)
    small_text(draw, area.x + (area.width - CHAR_W * len(shown)) // 2, area.y + y, shown, area.width)
    return shown


@functools.lru_cache(maxsize=64)
def _big_mask(text, scale, font):
    """``text`` drawn in a big-text font, proportionally spaced, scaled ``scale`` times (a mode-"1" image)."""
    strip = _lcd_strip(text) if font == "lcd" else _small_strip(text)
    return strip.resize((strip.width * scale, strip.height * scale), Image.NEAREST)


@functools.lru_cache(maxsize=1)
def _lcd_font():
    """luma.core's LCD font: 5x7 glyphs like a character LCD's, each as bytes, one per column, bit 0 the top row.

    Read from luma/core/legacy/font.py alone, not imported as luma.core.legacy.font: importing that package
    starts luma.core.virtual's pool of 4 threads, which nothing here uses (with its modules, about 0.8 MiB
    of the agent's resident memory). Only this font is kept.
    """
    core = importlib.util.find_spec("luma.core")
    path = os.path.join(os.path.dirname(core.origin), "legacy", "font.py")
    spec = importlib.util.spec_from_file_location("phonehome_luma_fonts", path)
    fonts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fonts)
    return tuple(bytes(glyph) for glyph in fonts.LCD_FONT)


def _lcd_strip(text):
    font = _lcd_font()
    columns = []
    for c in text:
        if c == " ":
            columns += [0, 0]
            continue
        glyph = list(font[ord(c) if ord(c) < 128 else ord("?")])
        while glyph and not glyph[0]:
            glyph.pop(0)
        while glyph and not glyph[-1]:
            glyph.pop()
        columns += glyph + [0]
    while columns and not columns[-1]:
        columns.pop()
    rows = max((col.bit_length() for col in columns), default=1)
    strip = Image.new("1", (max(1, len(columns)), rows))
    pixels = strip.load()
    for x, col in enumerate(columns):
        for y in range(rows):
            if col >> y & 1:
                pixels[x, y] = 1
    return strip


def _small_strip(text):
    # The small font's glyphs cut to their ink and set 1 px apart: its fixed 6 px cell looks gappy scaled up.
    cells = []  # (glyph cropped to its ink, the row its ink starts on), None for a space
    for c in text:
        glyph = Image.new("1", (CHAR_W, 11))
        ImageDraw.Draw(glyph).text((0, 0), c, font=_font(), fill=1)
        box = glyph.getbbox()
        cells.append((glyph.crop(box), box[1]) if box else None)
    inked = [cell for cell in cells if cell]
    top = min((row for _, row in inked), default=0)
    bottom = max((row + glyph.height for glyph, row in inked), default=1)
    width = sum(3 if cell is None else cell[0].width + 1 for cell in cells) - 1
    strip = Image.new("1", (max(1, width), bottom - top))
    x = 0
    for cell in cells:
        if cell is None:
            x += 3
            continue
        glyph, row = cell
        strip.paste(glyph, (x, row - top))
        x += glyph.width + 1
    return strip


def big_text(draw, area, y, text, *, max_scale, max_h, align="center", font="lcd"):
    """Draw ``text`` scaled up as far as ``max_scale`` allows within the area's width and ``max_h`` rows.

    ``font`` is "lcd" (luma.core's 5x7 LCD font: clear capitals and digits)
    or "small" (the small font's glyphs: 6 rows for a capital, where the
    LCD font needs 7). The drawing is centred vertically in its ``max_h``
    rows from ``y``. Returns (scale, width, height) of what was drawn; scale
    0 means it did not fit even at 1x and was drawn in the small font, cut.
    """
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    for scale in range(max_scale, 0, -1):
        mask = _big_mask(text, scale, font)
        if mask.width <= area.width and mask.height <= max_h:
            x = area.x + ((area.width - mask.width) // 2 if align == "center" else 0)
            draw.bitmap((x, area.y + y + (max_h - mask.height) // 2), mask, fill=1)
            return scale, mask.width, mask.height
    shown = small_text(draw, area.x, area.y + y, text, area.width)
    return 0, CHAR_W * len(shown), INK_ROWS


def lines(draw, area, y, pitch, texts):
    """Draw ``texts`` in the small font, one per line from ink top ``y`` every ``pitch`` rows; skip Nones."""
    for text in texts:
        if text is not None:
            small_text(draw, area.x, area.y + y, text, area.width)
            y += pitch


# -- what the pages say, as text -------------------------------------------------------------------------

def beat_text(snapshot):
    """'beat 12 s ago', 'no beat yet' or 'not sending beats' (not configured)."""
    age = snapshot.heartbeat_age_s
    if age is not None:
        return f"beat {format_duration(age)} ago"
    return "not sending beats" if snapshot.heartbeat == "off" else "no beat yet"


def uptime_text(snapshot):
    return None if snapshot.uptime_s is None else f"up {format_duration(snapshot.uptime_s)}"


def trouble_text(snapshot):
    """What is wrong, in a line, for the headlines that mean trouble; None otherwise."""
    headline, net = snapshot.headline, snapshot.network
    if headline == "NO NET":
        return f"{net.interface}: no address" if net.interface else "no network link"
    if headline == "DOWN":
        return snapshot.last_error or "heartbeats failing"
    if headline == "SETUP":
        return f"open {HOSTNAME}"
    return None


def offset_text(offset_ms):
    """'+12 ms', '-2.3 s', '+3 h 2 min' or '?' (unknown)."""
    if offset_ms is None:
        return "?"
    sign = "-" if offset_ms < 0 else "+"
    size = abs(offset_ms)
    if size < 1000:
        rounded = round(size)
        return f"{sign}{rounded} ms" if rounded else "0 ms"
    if size < 60_000:
        return f"{sign}{size / 1000:.1f} s"
    return sign + format_duration(size / 1000)


def verdict_text(verdict):
    # Problems shout, so a glance tells them apart from "ok".
    return verdict if verdict in ("ok", "unknown") else verdict.upper()


def short_url(url):
    for scheme in ("http://", "https://"):
        if url.startswith(scheme):
            return url[len(scheme):]
    return url


def local_time(now_wall, tz):
    """``now_wall`` (epoch seconds) as an aware datetime in ``tz`` (None: the system's local zone)."""
    moment = datetime.datetime.fromtimestamp(now_wall, datetime.UTC)
    return moment.astimezone(tz) if tz is not None else moment.astimezone()


# -- the pages ------------------------------------------------------------------------------------------

def draw_status(draw, snapshot, area, *, now_wall, tz):
    """The big headline, the age of the last good heartbeat, uptime, and what is wrong if anything is."""
    trouble = trouble_text(snapshot)
    if area.height >= _TALL_MIN_H:
        big_text(draw, area, 0, snapshot.headline, max_scale=4, max_h=28)
        third = trouble if trouble is not None else (snapshot.device_name or None)
        lines(draw, area, 32, 10, [beat_text(snapshot), uptime_text(snapshot), third])
    else:
        # 31 rows hold a 12-row word and two lines, not the LCD font's 14: the small font's capitals are used.
        big_text(draw, area, 0, snapshot.headline, max_scale=2, max_h=12, font="small")
        second = trouble if trouble is not None and snapshot.headline != "SETUP" else uptime_text(snapshot)
        lines(draw, area, 13, 9, [beat_text(snapshot), second])


def draw_network(draw, snapshot, area, *, now_wall, tz):
    """The IP address, the mDNS name, and the Wi-Fi network and signal (or the interface)."""
    net = snapshot.network
    address = net.ip or "no IP address"
    if net.wifi_signal_dbm is not None:
        ssid = net.wifi_ssid or "?"
        link = [f"Wi-Fi {ssid}", f"signal {net.wifi_signal_dbm} dBm"]
        # The short layout has one line for both: the name gives way to the signal.
        signal = f" {net.wifi_signal_dbm} dBm"
        link_short = fit(ssid, area.width - CHAR_W * len(signal)) + signal
    elif net.interface:
        link = [f"via {net.interface}"]
        link_short = link[0]
    else:
        link, link_short = ["no network link"], "no network link"
    if area.height >= _TALL_MIN_H:
        lines(draw, area, 0, 10, ["Network"])
        lines(draw, area, 14, 10, [address, HOSTNAME, *link])
    else:
        lines(draw, area, 0, 11, [address, HOSTNAME, link_short])


def draw_time(draw, snapshot, area, *, now_wall, tz):
    """Local time (HH:MM), the zone, the NTP offset and the clock check's verdict."""
    moment = local_time(now_wall, tz)
    abbreviation = moment.tzname() or ""
    zone = snapshot.time_zone or getattr(tz, "key", None)
    ntp = f"NTP {offset_text(snapshot.time_offset_ms)} {verdict_text(snapshot.time_verdict)}"
    clock = moment.strftime("%H:%M")
    if area.height >= _TALL_MIN_H:
        big_text(draw, area, 0, clock, max_scale=4, max_h=28)
        zone_line = f"{zone} ({abbreviation})" if zone and abbreviation != zone else (zone or abbreviation)
        problem = snapshot.time_reason if snapshot.time_verdict not in ("ok", "unknown") else None
        lines(draw, area, 32, 10, [zone_line, ntp, problem])
    else:
        _, clock_w, clock_h = big_text(draw, area, 0, clock, max_scale=2, max_h=14, align="left")
        beside = Area(area.x + clock_w + 4, area.y, area.width - clock_w - 4, area.height)
        # The abbreviation (CET, CEST, +03) sits beside the clock, level with the bottom of its digits.
        small_text(draw, beside.x, beside.y + max(0, clock_h - 8), abbreviation, beside.width)
        lines(draw, area, 21, 9, [ntp])


def draw_setup(draw, snapshot, area, *, now_wall, tz):
    """The one-time setup code, large, and where to use it; or that the appliance is already claimed."""
    setup = snapshot.setup
    if setup is None:
        title, code, note, url = "Setup", "-", "no setup code", HOSTNAME
    elif setup.claimed:
        title, code, note, url = "Setup", "CLAIMED", "manage it at", HOSTNAME
    else:
        title, code, note, url = "Setup code", setup.code, "claim this box at", short_url(setup.url)
    if area.height >= _TALL_MIN_H:
        lines(draw, area, 0, 10, [title])
        big_text(draw, area, 13, code, max_scale=2, max_h=14)
        lines(draw, area, 34, 10, [note, url])
    else:
        big_text(draw, area, 0, code, max_scale=2, max_h=14)
        small_centered(draw, area, 21, url)


def draw_peer(draw, snapshot, area, *, now_wall, tz):
    """The watched peer's name, its state in big letters and when it was last heard; more peers: a count."""
    if not snapshot.peers:  # not in the rotation then; drawn on request all the same
        lines(draw, area, 0, 10, ["Peer", "no peer watched"])
        return
    peer = _worst_peer(snapshot.peers)
    state = {"up": "UP", "down": "DOWN"}.get(peer.state, "NEW")
    heard = "never heard" if peer.last_heard_at is None else \
        f"heard {format_duration(max(0.0, snapshot.at - peer.last_heard_at))} ago"
    others = len(snapshot.peers) - 1
    more = f"+{others} more, {sum(p.state == 'down' for p in snapshot.peers)} down" if others else None
    if area.height >= _TALL_MIN_H:
        lines(draw, area, 0, 10, [f"Peer {peer.name}"])
        big_text(draw, area, 13, state, max_scale=3, max_h=21)
        lines(draw, area, 37, 10, [heard, more])
    else:
        big_text(draw, area, 0, state, max_scale=2, max_h=12, font="small")
        lines(draw, area, 13, 9, [f"Peer {peer.name}", heard])


def _worst_peer(peers):
    """The peer to show first: a down one before a new one before an up one (then by name)."""
    return min(peers, key=lambda p: ({"down": 0, "new": 1}.get(p.state, 2), p.name))


PAGES = {STATUS: draw_status, NETWORK: draw_network, TIME: draw_time, SETUP: draw_setup, PEER: draw_peer}


def pages_for(snapshot):
    """The page names to rotate through, in order: Setup only while a setup code waits to be claimed, Peer only
    when this appliance watches a peer."""
    pages = [STATUS]
    if snapshot.setup is not None and not snapshot.setup.claimed:
        pages.append(SETUP)
    if snapshot.peers:
        pages.append(PEER)
    return tuple(pages + [NETWORK, TIME])


def render(page, snapshot, *, width, height, shift=(0, 0), now_wall, tz=None):
    """A new mode-"1" image of ``width`` x ``height`` with ``page`` drawn for ``snapshot``.

    ``shift`` (dx, dy), each 0 or 1, moves the whole drawing against burn-in;
    ``now_wall`` (epoch seconds) is the moment the Time page shows, in ``tz``
    (a tzinfo; None: the system's local zone). Raises KeyError for a page
    name not in PAGES.
    """
    draw_page = PAGES[page]
    image = Image.new("1", (width, height))
    dx, dy = shift
    # One pixel kept free on the right and at the bottom, so a shifted drawing is never clipped.
    area = Area(dx, dy, width - 1, height - 1)
    draw_page(ImageDraw.Draw(image), snapshot, area, now_wall=now_wall, tz=tz)
    return image
