"""Test helpers: event factories and the real-infrastructure pytest plugin."""
