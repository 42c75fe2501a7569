"""The signal's pure core: factor kernels, indicators, stops, filters and the engine.

No I/O, no clock, no environment: time is the ``ts_event`` of the event being handled.
"""
