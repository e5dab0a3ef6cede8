from __future__ import annotations

import pathlib

import pytest

from ferry_common.settings import SettingsError, load_settings


def test_defaults_need_no_configuration(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings("registry", {})
    assert settings.address == "127.0.0.1:50051"
    assert settings.addresses == {
        "registry": "127.0.0.1:50051",
        "ingest": "127.0.0.1:50052",
        "train": "127.0.0.1:50053",
        "serve": "127.0.0.1:50054",
        "monitor": "127.0.0.1:50055",
    }
    assert settings.state_dir == tmp_path / ".ferry"
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / '.ferry' / 'registry.db'}"
    assert settings.object_store_url == (tmp_path / ".ferry" / "objects").as_uri()
    assert settings.auth_tokens_file is None
    assert settings.otlp_endpoint == "127.0.0.1:50055"  # monitor, when OTEL_* is unset
    assert settings.shutdown_grace_seconds == 10.0


def test_values_are_read_from_the_environment(tmp_path: pathlib.Path) -> None:
    settings = load_settings(
        "ingest",
        {
            "FERRY_INGEST_ADDRESS": "0.0.0.0:6000",
            "FERRY_REGISTRY_ADDRESS": "registry:50051",
            "FERRY_STATE_DIR": str(tmp_path),
            "FERRY_INGEST_DATABASE_URL": "postgresql+psycopg://u:p@db/ingest",
            "FERRY_OBJECT_STORE_URL": "s3://data/ferry",
            "FERRY_S3_ENDPOINT": "minio:9000",
            "FERRY_S3_SECURE": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
            "FERRY_SHUTDOWN_GRACE_SECONDS": "2.5",
        },
    )
    assert settings.address == "0.0.0.0:6000"
    assert settings.addresses["registry"] == "registry:50051"
    assert settings.resolved_database_url() == "postgresql+psycopg://u:p@db/ingest"
    assert settings.s3.secure is True and settings.s3.endpoint == "minio:9000"
    assert settings.otlp_endpoint == "collector:4317"
    assert settings.shutdown_grace_seconds == 2.5


def test_settings_are_frozen(tmp_path: pathlib.Path) -> None:
    settings = load_settings("train", {"FERRY_STATE_DIR": str(tmp_path)})
    with pytest.raises(AttributeError):
        settings.state_dir = tmp_path  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FERRY_REGISTRY_ADDRESS": "localhost"}, "FERRY_REGISTRY_ADDRESS: 'localhost' is not an address"),
        ({"FERRY_SERVE_ADDRESS": "host:99999"}, "FERRY_SERVE_ADDRESS: 'host:99999'"),
        ({"FERRY_S3_SECURE": "maybe"}, "FERRY_S3_SECURE: 'maybe' is not a boolean"),
        ({"FERRY_OBJECT_STORE_URL": "ftp://x/y"}, "FERRY_OBJECT_STORE_URL: 'ftp://x/y' is not file:///path or s3://"),
        ({"FERRY_SHUTDOWN_GRACE_SECONDS": "-1"}, "FERRY_SHUTDOWN_GRACE_SECONDS: '-1' must be greater than 0"),
        ({"FERRY_LOG_LEVEL": "loud"}, "FERRY_LOG_LEVEL: 'loud' is not one of"),
        (
            {"FERRY_AUTH_TOKENS_FILE": "/nonexistent/tokens.yaml"},
            "FERRY_AUTH_TOKENS_FILE: file '/nonexistent/tokens.yaml'",
        ),
        ({"FERRY_OBJECT_STORE_URL": "s3://b", "FERRY_S3_ENDPOINT": "nope"}, "FERRY_S3_ENDPOINT: 'nope'"),
    ],
)
def test_bad_values_are_rejected_with_a_clear_message(
    tmp_path: pathlib.Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings("registry", {"FERRY_STATE_DIR": str(tmp_path), **env})
    assert message in str(raised.value)


def test_tls_cert_without_key_is_rejected(tmp_path: pathlib.Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="FERRY_TLS_CERT_FILE and FERRY_TLS_KEY_FILE must be set together"):
        load_settings("registry", {"FERRY_TLS_CERT_FILE": str(cert)})


def test_config_file_supplies_defaults_the_environment_overrides(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "ferry.env"
    config.write_text("# shared\nFERRY_REGISTRY_ADDRESS=10.0.0.1:7000\nFERRY_LOG_LEVEL=debug\n")
    settings = load_settings(
        "registry", {"FERRY_CONFIG_FILE": str(config), "FERRY_LOG_LEVEL": "warning", "FERRY_STATE_DIR": str(tmp_path)}
    )
    assert settings.address == "10.0.0.1:7000"
    assert settings.log_level == "warning"


def test_unknown_service_is_rejected() -> None:
    with pytest.raises(SettingsError, match="unknown service 'billing'"):
        load_settings("billing", {})
