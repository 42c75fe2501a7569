"""The notifier's pure core: the state folded from the log, what to post for an event, and its text.

No I/O, no clock, no environment: time is the ``ts_event`` of the event being handled.
"""
