"""Nertz signal: factor scores, trend, stops and intents per closed bar (ARCHITECTURE.md §3 signal)."""
