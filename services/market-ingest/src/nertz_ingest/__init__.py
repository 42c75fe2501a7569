"""Nertz market-ingest: Bybit V5 public linear frames and kline CSVs in, ``md.*`` events out.

Layout (ARCHITECTURE.md §3): ``core`` is pure parsing and book-keeping (no I/O, no clock, no env);
``adapters`` talk to Bybit (pybit) and read and write recordings; ``live`` and ``replay`` glue them to
the bus; ``app``/``__main__`` is the one composition root.
"""
