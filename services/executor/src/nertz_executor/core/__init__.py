"""The executor's pure core: no I/O, no clock, no environment. Time is the input's ``ts_event``."""
