"""Object storage: local paths as before, S3 against a real local server (moto on 127.0.0.1), the OSS
configuration path, and one readable StorageError per failure (naming the URL, never the secret)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nertz_common import storage
from nertz_common.errors import ConfigurationError, TransientError
from nertz_common.infra import free_port
from nertz_common.storage import (
    Storage,
    StorageConfigError,
    StorageError,
    StorageNotFound,
    StorageSettings,
    StorageUnavailable,
)
from nertz_common.testing.fake_bybit import loopback_only
from nertz_common.testing.s3 import ISOLATED_AWS_ENV, SECRET, LocalS3

OSS_ENDPOINT = "https://oss-cn-hangzhou.aliyuncs.com"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for k, v in ISOLATED_AWS_ENV.items():
        monkeypatch.setenv(k, v)
    with loopback_only() as refused:
        yield
    assert refused == [], f"traffic beyond loopback was attempted: {refused}"


@pytest.fixture
def s3(local_s3: LocalS3) -> Storage:
    return Storage(local_s3.settings())


@pytest.fixture
def bucket(local_s3: LocalS3) -> str:
    return local_s3.bucket()


# --- S3 on the local server -------------------------------------------------------------------------


def test_storage_s3_bytes_round_trip_same_bytes_size_and_listing(s3: Storage, bucket: str) -> None:
    data = bytes(range(256)) * 1000
    url = f"s3://{bucket}/reports/run-1/report.json"
    s3.write_bytes(url, data)
    assert s3.read_bytes(url) == data
    assert s3.size(url) == len(data)
    assert s3.exists(url) and not s3.exists(f"s3://{bucket}/reports/none.json")
    s3.write_text(storage.join(f"s3://{bucket}/reports/run-1/", "report.html"), "<html></html>")
    assert s3.ls(f"s3://{bucket}/reports/run-1") == [
        f"s3://{bucket}/reports/run-1/report.html",
        f"s3://{bucket}/reports/run-1/report.json",
    ]
    assert s3.is_dir(f"s3://{bucket}/reports") and not s3.is_dir(url)
    assert s3.expand(f"s3://{bucket}/reports/run-1/*.json") == [url]
    assert s3.expand(f"s3://{bucket}/reports/run-1/") == s3.ls(f"s3://{bucket}/reports/run-1")
    with s3.open_read(url) as f:
        f.seek(256 * 999)
        assert f.read() == bytes(range(256))


def test_storage_s3_open_write_uploads_only_on_success(s3: Storage, bucket: str, tmp_path: Path) -> None:
    url = f"s3://{bucket}/bundles/x.nertz"
    with pytest.raises(RuntimeError), s3.open_write(url) as f:
        f.write(b"half a bundle")
        raise RuntimeError("cut")
    assert not s3.exists(url)
    with s3.open_write(url) as f:
        f.write(b"a whole bundle")
    assert s3.read_bytes(url) == b"a whole bundle"
    local = tmp_path / "rec.jsonl"
    local.write_bytes(b"x" * 10_000)
    s3.upload(local, f"s3://{bucket}/rec/rec.jsonl")
    assert s3.read_bytes(f"s3://{bucket}/rec/rec.jsonl") == local.read_bytes()


def test_storage_s3_path_style_against_the_local_server(s3: Storage, bucket: str, local_s3: LocalS3) -> None:
    signed = s3.filesystem("s3://").url(f"{bucket}/k.bin")
    assert signed.startswith(f"{local_s3.endpoint_url}/{bucket}/k.bin?")
    # the OSS options (signature V2, checksums only when required) round-trip against the server too
    oss_like = Storage(local_s3.settings(signature_version="s3", checksums="when_required"))
    oss_like.write_bytes(f"s3://{bucket}/oss/k.bin", b"x" * 70_000)
    assert s3.read_bytes(f"s3://{bucket}/oss/k.bin") == b"x" * 70_000


# --- local paths -------------------------------------------------------------------------------------


def test_storage_local_path_stays_local_and_parents_are_created(tmp_path: Path) -> None:
    st = Storage()
    target = tmp_path / "a" / "b" / "report.json"
    st.write_text(target, "{}")
    assert target.read_text() == "{}"
    assert st.read_bytes(str(target)) == b"{}" and st.size(target) == 2
    assert st.read_bytes(f"file://{target}") == b"{}"
    assert not storage.is_remote(target) and not storage.is_remote(f"file://{target}")
    assert storage.join(tmp_path, "x.json") == str(tmp_path / "x.json")
    assert st.ls(tmp_path / "a" / "b") == [str(target)]
    assert st.expand(str(tmp_path / "a" / "b" / "*.json")) == [str(target)]
    with pytest.raises(FileNotFoundError):  # the operating system's own error, as before
        st.read_bytes(tmp_path / "none")


def test_storage_local_write_is_atomic_old_file_kept_on_error(tmp_path: Path) -> None:
    st = Storage()
    target = tmp_path / "x.nertz"
    st.write_bytes(target, b"old")
    with pytest.raises(RuntimeError), st.open_write(target) as f:
        f.write(b"new, cut short")
        raise RuntimeError("cut")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.nertz"]  # no temporary file left behind


def test_storage_join_name_parent_of_urls_and_paths() -> None:
    assert storage.join("s3://b/reports", "report.json") == "s3://b/reports/report.json"
    assert storage.join("s3://b/reports/", "report.json") == "s3://b/reports/report.json"
    assert storage.name_of("s3://b/rec/x.jsonl.xz") == "x.jsonl.xz"
    assert storage.parent_of("s3://b/rec/x.jsonl.xz") == "s3://b/rec"
    assert storage.parent_of("s3://b/x") == "s3://b"
    assert storage.name_of("var/rec/x.jsonl") == "x.jsonl" and storage.parent_of("var/rec/x.jsonl") == "var/rec"
    assert storage.safe_url("s3://user:pw@b/k") == "s3://b/k"


# --- errors ------------------------------------------------------------------------------------------


def test_storage_missing_bucket_raises_config_error_naming_the_url(s3: Storage) -> None:
    url = "s3://nertz-no-such-bucket/reports/report.json"
    for op in (lambda: s3.write_bytes(url, b"x"), lambda: s3.read_bytes(url), lambda: s3.exists(url)):
        with pytest.raises(StorageConfigError) as e:
            op()
        assert "bucket 'nertz-no-such-bucket' does not exist" in str(e.value)
        assert url in str(e.value) and e.value.url == url
        assert isinstance(e.value, ConfigurationError) and isinstance(e.value, OSError)


def test_storage_missing_object_raises_not_found(s3: Storage, bucket: str) -> None:
    url = f"s3://{bucket}/none.nertz"
    with pytest.raises(StorageNotFound, match=f"expected an object at {url}, found none") as e:
        s3.read_bytes(url)
    assert isinstance(e.value, FileNotFoundError)


def test_storage_refused_credentials_raise_config_error_without_the_secret(local_s3: LocalS3, bucket: str) -> None:
    st = Storage(local_s3.settings(key="AKIAWRONG", secret="wrong-secret-value"))
    url = f"s3://{bucket}/x.json"
    with local_s3.checking_credentials(), pytest.raises(StorageConfigError) as e:
        st.write_bytes(url, b"x")
    text = str(e.value)
    assert "refused" in text and url in text and "InvalidAccessKeyId" in text
    assert "wrong-secret-value" not in text and "wrong-secret-value" not in repr(st.settings)


def test_storage_no_credentials_raises_config_error_saying_what_to_set(
    local_s3: LocalS3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    st = Storage(local_s3.settings(key=None, secret=None))
    with pytest.raises(StorageConfigError, match=r"no credentials to read s3://.*/x\.json: set AWS_ACCESS_KEY_ID"):
        st.read_bytes(f"s3://{bucket}/x.json")


def test_storage_unreachable_endpoint_raises_unavailable(local_s3: LocalS3) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    st = Storage(local_s3.settings(endpoint_url=dead))
    with pytest.raises(StorageUnavailable, match=f"cannot reach the store at {dead} to write s3://b-x/r.json") as e:
        st.write_bytes("s3://b-x/r.json", b"x")
    assert isinstance(e.value, TransientError) and SECRET not in str(e.value)


def test_storage_unknown_protocol_raises_config_error() -> None:
    with pytest.raises(StorageConfigError, match=r"unknown storage protocol 'nope' in nope://b/x\.nertz"):
        Storage().read_bytes("nope://b/x.nertz")
    with pytest.raises(StorageConfigError, match="S3-compatible endpoint"):  # ossfs is not installed
        Storage().write_bytes("oss://b/x.nertz", b"x")


def test_storage_error_is_one_line_naming_the_url() -> None:
    e = StorageError("cannot read s3://b/k: boom", "s3://b/k")
    assert str(e) == "cannot read s3://b/k: boom" and e.url == "s3://b/k"


# --- settings and the OSS configuration path ---------------------------------------------------------


def test_storage_settings_from_nertz_and_aws_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-AWS")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("NERTZ_STORAGE__ENDPOINT_URL", OSS_ENDPOINT)
    monkeypatch.setenv("NERTZ_STORAGE__ADDRESSING_STYLE", "virtual")
    s = Storage.from_env().settings
    assert (s.endpoint_url, s.region, s.addressing_style) == (OSS_ENDPOINT, "eu-west-1", "virtual")
    assert s.key is not None and s.key.get_secret_value() == "AKIA-AWS"
    assert "aws-secret" not in repr(s)
    monkeypatch.setenv("NERTZ_STORAGE__KEY", "nertz-key")  # the Nertz name wins over the AWS one
    monkeypatch.setenv("NERTZ_STORAGE__SECRET", "nertz-secret")
    s = Storage.from_env().settings
    assert s.key is not None and s.key.get_secret_value() == "nertz-key"


def test_storage_settings_bad_values_every_one_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERTZ_STORAGE__ADDRESSING_STYLE", "sideways")
    monkeypatch.setenv("NERTZ_STORAGE__ATTEMPTS", "0")
    with pytest.raises(ConfigurationError, match=r"addressing_style.*attempts"):
        Storage.from_env()


def test_storage_settings_key_without_secret_refused() -> None:
    with pytest.raises(ValueError, match="expected both"):
        StorageSettings(key="AKIA-ONLY")


def test_storage_oss_endpoint_with_virtual_addressing_gives_bucket_host_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {
        "NERTZ_STORAGE__ENDPOINT_URL": OSS_ENDPOINT, "NERTZ_STORAGE__ADDRESSING_STYLE": "virtual",
        "NERTZ_STORAGE__REGION": "cn-hangzhou", "NERTZ_STORAGE__SIGNATURE_VERSION": "s3",
        "AWS_ACCESS_KEY_ID": "LTAI-test", "AWS_SECRET_ACCESS_KEY": "s",
    }.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    settings = Storage.from_env().settings
    opts = settings.s3_options()
    assert opts["endpoint_url"] == OSS_ENDPOINT
    assert opts["config_kwargs"]["s3"] == {"addressing_style": "virtual"}
    assert opts["config_kwargs"]["signature_version"] == "s3"
    assert opts["client_kwargs"] == {"region_name": "cn-hangzhou"}
    # a presigned URL is made offline from the same client configuration: the bucket is in the host
    fs = Storage(settings).filesystem("s3://nertz-reports/x.nertz")
    signed = fs.url("nertz-reports/incidents/x.nertz")
    assert signed.startswith("https://nertz-reports.oss-cn-hangzhou.aliyuncs.com/incidents/x.nertz?")


def test_storage_settings_unset_s3_options_are_left_to_botocore() -> None:
    auto = StorageSettings(endpoint_url=OSS_ENDPOINT).s3_options()
    assert not {"s3", "signature_version", "request_checksum_calculation"} & set(auto["config_kwargs"])
    strict = StorageSettings(checksums="when_required").s3_options()["config_kwargs"]
    assert strict["request_checksum_calculation"] == strict["response_checksum_validation"] == "when_required"
