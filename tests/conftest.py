"""Real NATS JetStream and Postgres for the session (see nertz_common.testing.plugin)."""

pytest_plugins = ["nertz_common.testing.plugin"]
