"""The clock checks: NTP offset against several servers, the system's time service, the time zone.

A Pi has no real-time clock: after a power cut it boots with a stale time
until NTP fixes it, its clock drifts, and many end up in UTC when their owner
expects local time. ``TimeChecker`` watches all three and reports a verdict
(``ok``, ``drifting``, ``unsynced``, ``unreachable``, ``wrong-zone``; ``unknown``
before the first check) that goes into every heartbeat.

Modules: ``ntp`` asks one server (never raises), ``tracking`` keeps each
server's reach and jitter across checks, ``verdict`` is the pure decision,
``system`` reads the time service and zone, ``history`` keeps 7 days of
offsets, ``checker`` runs it all on a schedule, ``report`` prints the CLI
table, ``loopback`` holds NTP servers on 127.0.0.1 for tests, benchmarks and
the demo.
"""
