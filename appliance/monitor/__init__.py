"""The monitor: receives heartbeats, decides who is down, records events, sends alerts."""
