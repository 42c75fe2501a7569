"""I/O of the executor: the decisions barrier, reading its own log back, and metrics."""
