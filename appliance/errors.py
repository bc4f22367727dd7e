"""Every error a user of phonehome can meet; each message says what happened and what to do."""


class PhonehomeError(Exception):
    """Base of all phonehome errors."""


class ConfigError(PhonehomeError):
    """The configuration is invalid; ``problems`` lists every error, each with its key path."""

    def __init__(self, problems, *, source=""):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"invalid configuration{where} ({len(self.problems)} problem(s)):"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class DeliveryError(PhonehomeError):
    """An alert channel could not deliver a message.

    ``retryable`` says whether trying again later can help (a refused
    connection can, a rejected recipient address cannot).
    """

    def __init__(self, message, *, retryable):
        super().__init__(message)
        self.retryable = retryable


class SendError(PhonehomeError):
    """A heartbeat could not be delivered to one target; the message says why."""


class ListenError(PhonehomeError):
    """An HTTP server could not bind its address; the message names the setting to change."""


class StoreError(PhonehomeError):
    """The monitor's database cannot be opened; the message names data_dir."""


class TimezoneError(PhonehomeError):
    """The time zone could not be set; the message says why and what to do.

    ``permitted`` is False when the system refused for lack of rights (run as
    root or grant the right); ``usage`` is True when the zone name itself is
    wrong (nothing was run).
    """

    def __init__(self, message, *, permitted=True, usage=False):
        super().__init__(message)
        self.permitted = permitted
        self.usage = usage


class AckError(PhonehomeError):
    """An outage cannot be acknowledged; the message says why and what to do instead.

    ``reason``: "forged" or "expired" (the link), "not-down" (no outage to
    acknowledge now) or "over" (the link's outage has ended).
    """

    def __init__(self, message, *, reason):
        super().__init__(message)
        self.reason = reason
