"""Object storage for reports, incident bundles and recordings: a local path or any fsspec URL.

A *target* is a plain path (``var/backtest/report.json``: stays a local path, exactly as before),
a ``file://`` URL (local too), or a URL of another fsspec protocol: ``s3://bucket/key`` for AWS S3,
MinIO, moto, and Alibaba OSS through its S3-compatible endpoint; ``memory://``, ``gs://`` (with
gcsfs) and the rest of fsspec's protocols pass through without options.

S3 options come from :class:`StorageSettings` (``NERTZ_STORAGE__*``, or the standard ``AWS_*``
names). Alibaba OSS needs its S3-compatible endpoint and virtual-hosted addressing (OSS refuses
path-style requests); Alibaba's guide for boto3 also asks for signature V2 (``s3``), since botocore's V4
uploads use a chunked encoding OSS does not accept ("Use AWS SDKs to access OSS", help.aliyun.com)::

    NERTZ_STORAGE__ENDPOINT_URL=https://s3.oss-cn-hangzhou.aliyuncs.com   # or https://oss-cn-hangzhou.aliyuncs.com
    NERTZ_STORAGE__ADDRESSING_STYLE=virtual
    NERTZ_STORAGE__REGION=cn-hangzhou
    NERTZ_STORAGE__SIGNATURE_VERSION=s3
    AWS_ACCESS_KEY_ID=...  AWS_SECRET_ACCESS_KEY=...     # an OSS AccessKey pair

Writes are atomic where the backend allows: a local file is written to a temporary file in the same
directory and renamed over the target; an S3 object appears whole or not at all (a stream written
with :meth:`Storage.open` goes to a local temporary file first and is uploaded on success).

Errors of a remote store are one readable :class:`StorageError` naming the URL (never a secret),
sorted by what the operator must do (``nertz_common.errors``): a configuration to fix
(:class:`StorageConfigError`: unknown protocol, missing bucket, no or refused credentials), an outage
to wait out (:class:`StorageUnavailable`), a missing object (:class:`StorageNotFound`, also a
``FileNotFoundError``). Local paths raise the usual ``OSError`` of the operating system.
"""

from __future__ import annotations

import contextlib
import glob
import os
import posixpath
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nertz_common.errors import ConfigurationError, NertzError, TransientError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

Target = str | os.PathLike[str]
"""A local path (``str`` or ``Path``) or a URL (``s3://bucket/key``, ``file:///abs/path``)."""

_LOCAL_PROTOCOLS = frozenset({"file", "local"})
_S3_PROTOCOLS = frozenset({"s3", "s3a"})
_GLOB = re.compile(r"[*?\[]")


class StorageError(NertzError, OSError):
    """A remote store failed; the message names the URL and what to do, never a secret.

    Attributes
    ----------
    url : str
        The target (user and password of a URL removed).
    """

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url

    def __str__(self) -> str:
        return str(self.args[0])


class StorageConfigError(StorageError, ConfigurationError):
    """Unknown protocol, missing bucket, no credentials or refused ones: the operator must fix a setting."""


class StorageUnavailable(StorageError, TransientError):
    """The store could not be reached (connection refused, timeout): worth retrying later."""


class StorageNotFound(StorageError, FileNotFoundError):
    """No object (or directory prefix) at the URL, in a bucket that exists."""


class StorageSettings(BaseSettings):
    """How remote stores are reached (``NERTZ_STORAGE__*``; the standard ``AWS_*`` names work too).

    Every field is optional: unset S3 options are left to botocore's own chain (its config files, an
    instance role). Secrets are ``SecretStr`` (repr ``***``).

    Attributes
    ----------
    endpoint_url : str or None
        S3 endpoint (``NERTZ_STORAGE__ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``), e.g.
        ``https://oss-cn-hangzhou.aliyuncs.com`` for Alibaba OSS, ``http://127.0.0.1:9000`` for MinIO.
    region : str or None
        Region name (``NERTZ_STORAGE__REGION``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``).
    key, secret : SecretStr or None
        Access key pair (``NERTZ_STORAGE__KEY``/``NERTZ_STORAGE__SECRET``, ``AWS_ACCESS_KEY_ID``/
        ``AWS_SECRET_ACCESS_KEY``); both or neither.
    session_token : SecretStr or None
        Temporary credentials' token (``NERTZ_STORAGE__SESSION_TOKEN``, ``AWS_SESSION_TOKEN``).
    addressing_style : {"auto", "virtual", "path"}
        ``virtual`` (``bucket.host/key``: required by Alibaba OSS), ``path`` (``host/bucket/key``: MinIO,
        moto on an IP address), ``auto`` (botocore decides).
    signature_version : {"s3v4", "s3"} or None
        Request signing: ``s3v4`` (botocore's default), ``s3`` (V2: what Alibaba's guide asks boto3 to use
        with OSS). None = botocore's default.
    checksums : {"when_supported", "when_required"} or None
        botocore's ``request_checksum_calculation``/``response_checksum_validation``: ``when_required``
        for stores that refuse the checksummed (aws-chunked) uploads of botocore >= 1.36. None = default.
    anon : bool
        Unsigned requests (a public bucket).
    connect_timeout_s, read_timeout_s : float
        Socket timeouts of one request, s.
    attempts : int
        Tries of one request before a network error is raised (botocore's ``max_attempts``).
    """

    model_config = SettingsConfigDict(env_prefix="NERTZ_STORAGE__", extra="ignore", populate_by_name=True)

    endpoint_url: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "endpoint_url", "NERTZ_STORAGE__ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"
        ),
    )
    region: str | None = Field(
        None, validation_alias=AliasChoices("region", "NERTZ_STORAGE__REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
    )
    key: SecretStr | None = Field(None, validation_alias=AliasChoices("key", "NERTZ_STORAGE__KEY", "AWS_ACCESS_KEY_ID"))
    secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("secret", "NERTZ_STORAGE__SECRET", "AWS_SECRET_ACCESS_KEY")
    )
    session_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("session_token", "NERTZ_STORAGE__SESSION_TOKEN", "AWS_SESSION_TOKEN")
    )
    addressing_style: Literal["auto", "virtual", "path"] = "auto"
    signature_version: Literal["s3v4", "s3"] | None = None
    checksums: Literal["when_supported", "when_required"] | None = None
    anon: bool = False
    connect_timeout_s: float = Field(10.0, gt=0, description="socket connect timeout of one request, s")
    read_timeout_s: float = Field(60.0, gt=0, description="socket read timeout of one request, s")
    attempts: int = Field(3, ge=1, le=20, description="tries of one request")

    @model_validator(mode="after")
    def _pair(self) -> StorageSettings:
        if (self.key is None) != (self.secret is None):
            raise ValueError("expected both NERTZ_STORAGE__KEY and NERTZ_STORAGE__SECRET (or both AWS_*), was one")
        return self

    def s3_options(self) -> dict[str, Any]:
        """Return the keyword arguments of ``s3fs.S3FileSystem`` (secrets included: never log them).

        ``config_kwargs`` holds botocore's ``Config``: timeouts, attempts and, when set, ``{"s3":
        {"addressing_style": ...}}``, ``signature_version`` and the checksum behaviour.
        """
        config: dict[str, Any] = {
            "connect_timeout": self.connect_timeout_s,
            "read_timeout": self.read_timeout_s,
            "retries": {"max_attempts": self.attempts, "mode": "standard"},
        }
        if self.addressing_style != "auto":
            config["s3"] = {"addressing_style": self.addressing_style}
        if self.signature_version is not None:
            config["signature_version"] = self.signature_version
        if self.checksums is not None:
            config["request_checksum_calculation"] = config["response_checksum_validation"] = self.checksums
        opts: dict[str, Any] = {"config_kwargs": config}
        if self.endpoint_url:
            opts["endpoint_url"] = self.endpoint_url
        if self.region:
            opts["client_kwargs"] = {"region_name": self.region}
        if self.key is not None and self.secret is not None:
            opts["key"] = self.key.get_secret_value()
            opts["secret"] = self.secret.get_secret_value()
        if self.session_token is not None:
            opts["token"] = self.session_token.get_secret_value()
        if self.anon:
            opts["anon"] = True
        return opts


# --- targets ----------------------------------------------------------------------------------------


def protocol_of(target: Target) -> str | None:
    """Return the URL protocol of ``target`` (``"s3"``), None for a local path or a ``file://`` URL."""
    text = os.fspath(target)
    if "://" not in text:
        return None
    proto = text.split("://", 1)[0].lower()
    return None if proto in _LOCAL_PROTOCOLS else proto


def is_remote(target: Target) -> bool:
    """True when ``target`` is a URL of a store other than the local file system."""
    return protocol_of(target) is not None


def local_path(target: Target) -> Path:
    """Return the local path of a plain path or a ``file://`` URL.

    Raises
    ------
    ValueError
        If ``target`` is a remote URL.
    """
    if is_remote(target):
        raise ValueError(f"expected a local path or a file:// URL, was {safe_url(target)}")
    text = os.fspath(target)
    if "://" in text:
        text = text.split("://", 1)[1]
    return Path(text)


def join(base: Target, name: str) -> str:
    """Return the target ``name`` inside the directory ``base`` (a path or a URL), as a string."""
    text = os.fspath(base)
    if is_remote(text):
        return text.rstrip("/") + "/" + name.lstrip("/")
    return str(Path(text.split("://", 1)[1] if "://" in text else text) / name)


def name_of(target: Target) -> str:
    """Return the last part of a path or URL: ``s3://b/rec/x.jsonl.xz`` → ``x.jsonl.xz``."""
    return posixpath.basename(os.fspath(target).rstrip("/")) if is_remote(target) else local_path(target).name


def parent_of(target: Target) -> str:
    """Return the directory of a path or URL: ``s3://b/rec/x.jsonl.xz`` → ``s3://b/rec``."""
    text = os.fspath(target)
    if is_remote(text):
        proto, rest = text.split("://", 1)
        head = posixpath.dirname(rest.rstrip("/"))
        return f"{proto}://{head or rest.split('/', 1)[0]}"
    return str(local_path(text).parent)


def safe_url(target: Target) -> str:
    """Return ``target`` with the user and password of a URL removed (for messages and logs)."""
    return re.sub(r"^([A-Za-z][\w+.-]*://)[^/@]*@", r"\1", os.fspath(target))


# --- the store ----------------------------------------------------------------------------------------


class Storage:
    """Read, write and list local paths and fsspec URLs with the options of ``settings``.

    Build one in the composition root (:meth:`from_env` there, which checks the settings at start) and
    pass it on. Local paths never touch fsspec nor the settings; a remote file system is made once per
    protocol and kept.

    Parameters
    ----------
    settings : StorageSettings, optional
        S3 options. None = read them from the environment when a remote target is first used.
    """

    def __init__(self, settings: StorageSettings | None = None) -> None:
        self._settings = settings
        self._filesystems: dict[str, AbstractFileSystem] = {}

    @property
    def settings(self) -> StorageSettings:
        """The S3 options (read from the environment on first use if none were given).

        Raises
        ------
        ConfigurationError
            If the environment holds bad storage settings (every one listed).
        """
        if self._settings is None:
            self._settings = _from_env()
        return self._settings

    @classmethod
    def from_env(cls) -> Storage:
        """Build a store from ``NERTZ_STORAGE__*`` and ``AWS_*``.

        Raises
        ------
        ConfigurationError
            Listing every bad setting.
        """
        return cls(_from_env())

    def options(self, protocol: str) -> dict[str, Any]:
        """Return the file-system options of ``protocol`` (S3 options for ``s3``/``s3a``, else none)."""
        return self.settings.s3_options() if protocol in _S3_PROTOCOLS else {}

    def filesystem(self, target: Target) -> AbstractFileSystem:
        """Return the fsspec file system of a remote ``target`` (made on first use).

        Raises
        ------
        StorageConfigError
            If the protocol is unknown, or its package is not installed.
        ValueError
            If ``target`` is local.
        """
        proto = protocol_of(target)
        if proto is None:
            raise ValueError(f"expected a remote URL, was the local path {os.fspath(target)}")
        fs = self._filesystems.get(proto)
        if fs is None:
            fs = self._filesystems[proto] = self._make(proto, safe_url(target))
        return fs

    def _make(self, proto: str, url: str) -> AbstractFileSystem:
        import fsspec

        try:
            cls = fsspec.get_filesystem_class(proto)
        except ValueError:
            raise StorageConfigError(
                f"unknown storage protocol {proto!r} in {url}: expected a local path, file://, s3:// "
                f"(also Alibaba OSS through its S3-compatible endpoint) or another fsspec protocol",
                url,
            ) from None
        except ImportError as e:
            hint = (
                "; Alibaba OSS is reachable through its S3-compatible endpoint: use s3://bucket/... with "
                "NERTZ_STORAGE__ENDPOINT_URL=https://oss-<region>.aliyuncs.com and "
                "NERTZ_STORAGE__ADDRESSING_STYLE=virtual"
                if proto == "oss"
                else ""
            )
            raise StorageConfigError(f"storage protocol {proto!r} of {url} is not installed: {e}{hint}", url) from None
        fs = cls(**self.options(proto))
        if proto in _S3_PROTOCOLS:
            fs.retries = self.settings.attempts  # s3fs's own retry loop, on top of botocore's
        return fs

    # --- reading ----------------------------------------------------------------------------------

    def read_bytes(self, target: Target) -> bytes:
        """Return the whole content of a file or object.

        Raises
        ------
        StorageError
            For a remote target (:class:`StorageNotFound` if there is no object).
        OSError
            For a local path (e.g. ``FileNotFoundError``).
        """
        if not is_remote(target):
            return local_path(target).read_bytes()
        with self._errors(target, "read"):
            return bytes(self.filesystem(target).cat_file(_path(target)))

    def exists(self, target: Target) -> bool:
        """True when a file, object or directory is at ``target``.

        Raises
        ------
        StorageError
            If a remote store cannot answer (missing bucket, credentials, network).
        """
        if not is_remote(target):
            return local_path(target).exists()
        with self._errors(target, "look up"):
            fs = self.filesystem(target)
            if fs.exists(_path(target)):
                return True
            self._check_bucket(fs, target)
            return False

    def size(self, target: Target) -> int:
        """Return the size of a file or object, bytes.

        Raises
        ------
        StorageError, OSError
            As :meth:`read_bytes`.
        """
        if not is_remote(target):
            return local_path(target).stat().st_size
        with self._errors(target, "look up"):
            return int(self.filesystem(target).size(_path(target)))

    def is_dir(self, target: Target) -> bool:
        """True when ``target`` is a local directory, or a remote prefix holding objects.

        Raises
        ------
        StorageError
            If a remote store cannot answer.
        """
        if not is_remote(target):
            return local_path(target).is_dir()
        with self._errors(target, "look up"):
            return bool(self.filesystem(target).isdir(_path(target)))

    def ls(self, target: Target) -> list[str]:
        """Return the files directly inside the directory ``target``, sorted by name (URLs for a remote one).

        Raises
        ------
        StorageError
            For a remote target (:class:`StorageNotFound` if nothing is under the prefix).
        OSError
            For a local path that is not a directory.
        """
        if not is_remote(target):
            d = local_path(target)
            return sorted(str(p) for p in d.iterdir() if p.is_file())
        with self._errors(target, "list"):
            fs = self.filesystem(target)
            entries = fs.ls(_path(target).rstrip("/"), detail=True, refresh=True)
            return sorted(_url(target, e["name"]) for e in entries if e.get("type") == "file")

    def expand(self, target: Target) -> list[str]:
        """Return the files a target names: itself, the files of a directory, or the matches of a glob
        (``s3://b/rec/*.jsonl.xz``), sorted; a missing target is returned as is (the reader says so).

        Raises
        ------
        StorageError
            If a remote store cannot answer.
        """
        text = os.fspath(target)
        if not is_remote(text):
            local = str(local_path(text))
            if _GLOB.search(local) and not os.path.exists(local):
                return sorted(p for p in glob.glob(local) if os.path.isfile(p))
            return self.ls(local) if os.path.isdir(local) else [text]
        if _GLOB.search(name_of(text)):
            with self._errors(text, "list"):
                return sorted(_url(text, p) for p in self.filesystem(text).glob(_path(text)))
        return self.ls(text) if self.is_dir(text) else [text]

    @contextlib.contextmanager
    def open_read(self, target: Target) -> Iterator[IO[bytes]]:
        """Open a file or object for reading bytes (seekable; remote ones stream in blocks).

        Raises
        ------
        StorageError, OSError
            As :meth:`read_bytes`.
        """
        if not is_remote(target):
            with open(local_path(target), "rb") as f:
                yield f
            return
        with self._errors(target, "open"):
            f = self.filesystem(target).open(_path(target), "rb")
        with f:
            yield f

    # --- writing ----------------------------------------------------------------------------------

    def write_bytes(self, target: Target, data: bytes) -> None:
        """Write ``data`` to ``target`` atomically (replacing it); create local parent directories.

        Raises
        ------
        StorageError
            For a remote target (missing bucket, credentials, network).
        OSError
            For a local path (permissions, disk full).
        """
        if not is_remote(target):
            with _atomic_local(local_path(target)) as f:
                f.write(data)
            return
        with self._errors(target, "write"):
            self.filesystem(target).pipe_file(_path(target), data)

    def write_text(self, target: Target, text: str) -> None:
        """Write ``text`` as UTF-8 (see :meth:`write_bytes`)."""
        self.write_bytes(target, text.encode())

    @contextlib.contextmanager
    def open_write(self, target: Target) -> Iterator[IO[bytes]]:
        """Open ``target`` for writing bytes; it appears, whole, only when the block ends without error.

        Local: a temporary file next to it, renamed over it. Remote: a local temporary file, uploaded
        at the end (an error inside the block uploads nothing).

        Raises
        ------
        StorageError, OSError
            As :meth:`write_bytes`.
        """
        if not is_remote(target):
            with _atomic_local(local_path(target)) as f:
                yield f
            return
        fs = self.filesystem(target)
        with tempfile.NamedTemporaryFile(prefix="nertz-upload-", suffix=".part") as tmp:
            yield tmp  # type: ignore[misc]
            tmp.flush()
            with self._errors(target, "write"):
                fs.put_file(tmp.name, _path(target))

    def upload(self, local: Path, target: Target) -> None:
        """Copy the local file ``local`` to ``target`` (atomic: an object appears whole).

        Raises
        ------
        StorageError, OSError
            As :meth:`write_bytes`; ``OSError`` if ``local`` cannot be read.
        """
        if not is_remote(target):
            with open(local, "rb") as src, _atomic_local(local_path(target)) as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            return
        with self._errors(target, "write"):
            self.filesystem(target).put_file(str(local), _path(target))

    # --- errors -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, target: Target, doing: str) -> Iterator[None]:
        url = safe_url(target)
        try:
            yield
        except StorageError:
            raise
        except Exception as e:
            raise self._translate(e, url, doing) from e

    def _where(self) -> str:
        ep = self.settings.endpoint_url
        return f" at {ep}" if ep else ""

    def _translate(self, e: Exception, url: str, doing: str) -> Exception:
        code = _code_of(e)
        name = type(e).__name__
        if code == "NoSuchBucket" or (isinstance(e, FileNotFoundError) and "bucket does not exist" in str(e)):
            bucket = _path(url).split("/", 1)[0]
            return StorageConfigError(f"bucket {bucket!r} does not exist{self._where()} (cannot {doing} {url})", url)
        if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
            return StorageConfigError(
                f"no credentials to {doing} {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
                f"NERTZ_STORAGE__KEY and NERTZ_STORAGE__SECRET), or NERTZ_STORAGE__ANON=true for a public bucket",
                url,
            )
        if isinstance(e, PermissionError) or code in _REFUSED:
            return StorageConfigError(
                f"the store{self._where()} refused to let us {doing} {url} ({code or 'forbidden'}: {_first_line(e)}): "
                f"check the credentials (NERTZ_STORAGE__KEY/SECRET or AWS_ACCESS_KEY_ID/SECRET_ACCESS_KEY) "
                f"and the bucket's permissions",
                url,
            )
        if isinstance(e, FileNotFoundError):
            return StorageNotFound(f"expected an object at {url}, found none", url)
        if _is_network(e):
            return StorageUnavailable(f"cannot reach the store{self._where()} to {doing} {url}: {_first_line(e)}", url)
        if name == "ParamValidationError" or isinstance(e, ValueError):
            return StorageConfigError(f"cannot {doing} {url}: {_first_line(e)}", url)
        return StorageError(f"cannot {doing} {url}: {name}: {_first_line(e)}", url)

    def _check_bucket(self, fs: AbstractFileSystem, target: Target) -> None:
        proto = protocol_of(target)
        if proto in _S3_PROTOCOLS:
            bucket = _path(target).split("/", 1)[0]
            if not fs.exists(bucket):
                raise FileNotFoundError("The specified bucket does not exist")


def _from_env() -> StorageSettings:
    try:
        return StorageSettings()
    except ValidationError as e:
        bad = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'storage'}: {x['msg']}" for x in e.errors())
        raise ConfigurationError(f"storage settings: {bad}") from None


_REFUSED = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "Forbidden", "403"}
)


def _code_of(e: BaseException) -> str:
    for x in (e, e.__cause__):
        resp = getattr(x, "response", None)
        if isinstance(resp, dict):
            return str(resp.get("Error", {}).get("Code", ""))
    return ""


def _is_network(e: BaseException) -> bool:
    names = {t.__name__ for t in type(e).__mro__}
    return bool(
        names & {"EndpointConnectionError", "ConnectionError", "ConnectTimeoutError", "ReadTimeoutError"}
        or isinstance(e, (ConnectionError, TimeoutError))
        or names & {"ClientConnectorError", "ServerDisconnectedError", "FSTimeoutError"}
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def _path(target: Target) -> str:
    return os.fspath(target).split("://", 1)[1]


def _url(target: Target, path: str) -> str:
    proto = os.fspath(target).split("://", 1)[0]
    return f"{proto}://{path.split('://', 1)[-1]}"


@contextlib.contextmanager
def _atomic_local(path: Path) -> Iterator[IO[bytes]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")  # same directory: the rename is atomic
    try:
        with open(tmp, "xb") as f:  # the process's umask applies, as to a plain open()
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
