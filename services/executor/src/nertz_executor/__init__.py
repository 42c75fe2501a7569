"""Nertz executor: the Structural Hard Lock, the risk guard and the paper venue.

``core`` is pure (the lock state machine, the risk rules, the paper venue); ``adapters`` do the I/O
(the decisions barrier, reading the log back, metrics); ``handlers`` glue the bus to the core; ``app``
is the one composition root (``python -m nertz_executor``).
"""
