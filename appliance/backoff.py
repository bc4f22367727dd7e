"""Back-off with jitter, one rule for heartbeat retries and alert retries."""

_MAX_DOUBLINGS = 30  # 2**30 times the first delay is decades; beyond it the float would overflow for nothing


def backoff_s(attempt, *, first_s, max_s, rand):
    """Seconds before retry number ``attempt`` (1 = the first retry).

    Doubles from ``first_s`` up to ``max_s``, times a jitter factor in
    [0.5, 1.0] drawn from ``rand()`` (a float in [0, 1)), so many senders that
    failed together do not retry in lockstep.
    """
    doublings = min(max(attempt, 1) - 1, _MAX_DOUBLINGS)
    return min(max_s, first_s * 2 ** doublings) * (0.5 + 0.5 * rand())
