"""Pure core of market-ingest: frame parsing, the order book, kline CSV rows. No I/O, no clock, no env."""
