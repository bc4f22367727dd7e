"""``phonehome time check``'s printout: a table like ``ntpq -p``, the time service, the zone and the verdict."""

_COLUMNS = ("remote", "refid", "st", "reach", "delay", "offset", "jitter", "status")


def _ms(value, *, signed=False):
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def server_rows(status):
    """One row of strings per server: remote, refid, st, reach (octal), delay, offset, jitter (ms), status."""
    rows = []
    for s in status.servers:
        a = s.answer
        rows.append([a.server, a.refid or "-", "-" if a.stratum is None else str(a.stratum), f"{s.reach:03o}",
                     _ms(a.delay_ms), _ms(a.offset_ms, signed=True), _ms(s.jitter_ms), a.status])
    return rows


def _table(rows):
    widths = [max(len(r[i]) for r in [list(_COLUMNS)] + rows) for i in range(len(_COLUMNS) - 1)]
    right = {2, 3, 4, 5, 6}  # numbers line up on the right, as in ntpq
    lines = []
    for r in [list(_COLUMNS)] + rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells + [r[-1]]))
    lines.insert(1, "=" * max(len(line) for line in lines))
    return lines


def zone_line(status):
    """How the system's zone compares with the configured one, for people."""
    shown = status.system_zone or "unknown"
    if not status.wanted_zone:
        return f"{shown} (not checked: [time] timezone is empty)"
    if status.zone_matches:
        return f"{shown} (as configured)"
    return (f"{shown}, but [time] timezone is {status.wanted_zone}: run 'phonehome time set-timezone "
            f"{status.wanted_zone}' as root")


def render_check(status):
    """The whole printout for one TimeStatus, as text ending in a newline."""
    lines = []
    if status.servers:
        lines += _table(server_rows(status))
        lines.append("(delay, offset, jitter in ms; offset > 0: this clock is ahead of the server, "
                     "the opposite of ntpq's sign)")
    else:
        lines.append("no NTP servers configured ([time] servers is empty)")
    lines.append("")
    lines.append(f"time service: {status.service_detail or status.service or 'unknown'}")
    lines.append(f"time zone:    {zone_line(status)}")
    lines.append(f"verdict:      {status.verdict}: {status.reason}")
    return "\n".join(lines) + "\n"
