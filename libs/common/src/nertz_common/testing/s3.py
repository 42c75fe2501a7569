"""A real S3 server on 127.0.0.1 for tests: moto's threaded server, reached by s3fs over HTTP.

Path-style addressing (moto on an IP address cannot serve ``bucket.host`` names); explicit test
credentials and region, so botocore never looks for credentials elsewhere (no IMDS, no ``~/.aws``).
The server is shared by a test session: give each test its own bucket (:meth:`LocalS3.bucket`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nertz_common.storage import Storage, StorageSettings

KEY = "nertz-test-key"
SECRET = "nertz-test-secret"  # moto accepts any pair while its auth is off
REGION = "eu-central-1"  # moto refuses us-east-1 as a LocationConstraint


@dataclass(frozen=True)
class LocalS3:
    """A running local S3 server.

    Attributes
    ----------
    endpoint_url : str
        ``http://127.0.0.1:<port>``.
    """

    endpoint_url: str

    def settings(self, **overrides: Any) -> StorageSettings:
        """Return storage settings that reach this server (path-style, test credentials), with ``overrides``."""
        base: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "key": KEY,
            "secret": SECRET,
            "addressing_style": "path",
            "attempts": 1,
            "connect_timeout_s": 2.0,
            "read_timeout_s": 10.0,
        }
        return StorageSettings.model_validate({**base, **overrides})

    def env(self) -> dict[str, str]:
        """Return the environment variables by which a process reaches this server (and nothing else)."""
        return {
            "NERTZ_STORAGE__ENDPOINT_URL": self.endpoint_url,
            "NERTZ_STORAGE__REGION": REGION,
            "NERTZ_STORAGE__KEY": KEY,
            "NERTZ_STORAGE__SECRET": SECRET,
            "NERTZ_STORAGE__ADDRESSING_STYLE": "path",
            "NERTZ_STORAGE__ATTEMPTS": "1",
            **ISOLATED_AWS_ENV,
        }

    def bucket(self, prefix: str = "nertz") -> str:
        """Create a new, empty bucket; return its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        Storage(self.settings()).filesystem("s3://").mkdir(name)
        return name

    @contextlib.contextmanager
    def checking_credentials(self) -> Iterator[None]:
        """Make the server check every request's credentials while the block runs (refusing the test pair:
        no IAM user holds it)."""
        from moto import settings

        before = settings.INITIAL_NO_AUTH_ACTION_COUNT
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        try:
            yield
        finally:
            settings.INITIAL_NO_AUTH_ACTION_COUNT = before


#: variables that keep botocore away from real credentials and the instance metadata service
ISOLATED_AWS_ENV = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@contextlib.contextmanager
def serve() -> Iterator[LocalS3]:
    """Run moto's S3 server on 127.0.0.1 (a free port) until the block ends."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield LocalS3(f"http://{host}:{port}")
    finally:
        server.stop()
