"""I/O of market-ingest: recordings and CSV files in (the live pybit feed comes in a later issue)."""
