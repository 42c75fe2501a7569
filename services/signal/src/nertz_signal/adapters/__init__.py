"""I/O of the signal service (reading the log back to rebuild state)."""
