"""What the bad-input fault tests share: their hypothesis settings, the password their pages log in with, and
the steps of a field's path ("peers[0].power_cycles[0].at")."""

import re

from hypothesis import HealthCheck, settings

PASSWORD = "correct horse battery"
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def examples(n):
    """Hypothesis settings for one target: ``n`` examples, the same ones on every run, no time limit per example.

    The monitor, the follower and the config file are shared by the examples on purpose: a refused input must
    leave them as they were, so each example checks what the ones before it left.
    """
    return settings(max_examples=n, database=None, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def path_steps(path):
    """The keys and list indices of a field path: "peers[0].power_cycles[0].at" -> ["peers", 0, "power_cycles", 0,
    "at"]; "" -> []."""
    return [int(i) if i else k for k, i in _STEP.findall(path)]
