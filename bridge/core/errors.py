"""Error kinds that decide what the dispatcher does with a failing event."""


class TransientError(Exception):
    """A dependency (homeserver, relay, directory) is unreachable or overloaded.

    The event is retried with capped backoff for as long as it takes, without using
    up its attempts: an outage must never turn into dropped events.
    """
