"""I/O of market-ingest: Bybit through pybit (WebSocket, REST), recordings and CSV files, the recorder."""
