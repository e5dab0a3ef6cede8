"""Typed, frozen settings read once from ``FERRY_*`` environment variables.

Every variable is documented in the README's configuration table. ``main()`` of a
service calls :func:`load_settings` once and passes the result down; nothing else
reads the environment.

``FERRY_CONFIG_FILE`` may name a file of ``KEY=VALUE`` lines (``#`` comments); its
values are used where the environment does not set the same key.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

__all__ = [
    "DEFAULT_ADDRESSES",
    "SERVICES",
    "S3Settings",
    "Settings",
    "SettingsError",
    "TlsSettings",
    "load_settings",
]

SERVICES = ("registry", "ingest", "train", "serve", "monitor")

DEFAULT_ADDRESSES: Mapping[str, str] = {
    "registry": "127.0.0.1:50051",
    "ingest": "127.0.0.1:50052",
    "train": "127.0.0.1:50053",
    "serve": "127.0.0.1:50054",
    "monitor": "127.0.0.1:50055",
}

_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A configuration variable has a value Ferry cannot use."""


@dataclass(frozen=True)
class S3Settings:
    """Connection to an S3 endpoint (MinIO, AWS S3, any S3 API)."""

    endpoint: str
    access_key: str
    secret_key: str
    secure: bool


@dataclass(frozen=True)
class TlsSettings:
    """Server TLS (cert + key), mTLS (client CA) and what clients trust (CA)."""

    cert_file: pathlib.Path | None = None
    key_file: pathlib.Path | None = None
    client_ca_file: pathlib.Path | None = None
    ca_file: pathlib.Path | None = None

    @property
    def server_enabled(self) -> bool:
        return self.cert_file is not None


@dataclass(frozen=True)
class Settings:
    """Everything a Ferry service is configured with.

    Attributes:
        service: which service these settings are for (``registry``...).
        addresses: listen/find address of every service.
        state_dir: root of embedded state (SQLite files, local object store...).
        database_url: this service's SQLAlchemy URL (``None`` = SQLite in state_dir).
        object_store_url: ``file:///path`` or ``s3://bucket[/prefix]``.
        s3: S3 connection, used when ``object_store_url`` is ``s3://``.
        auth_tokens_file: turns authentication on when set.
        auth_token: bearer token sent on outbound calls.
        tls: TLS files.
        otlp_endpoint: where spans go (OTLP/gRPC); ``None`` disables export.
        log_level: ``debug``, ``info``, ``warning``, ``error``.
        log_format: ``json``, ``console`` or ``auto`` (JSON unless a TTY).
        shutdown_grace_seconds: how long SIGTERM waits for in-flight calls.
        call_timeout_seconds: default deadline of outbound calls.
        extra: service-specific ``FERRY_<SERVICE>_*`` variables, raw.
    """

    service: str
    addresses: Mapping[str, str]
    state_dir: pathlib.Path
    database_url: str | None
    object_store_url: str
    s3: S3Settings
    auth_tokens_file: pathlib.Path | None
    auth_token: str | None
    tls: TlsSettings
    otlp_endpoint: str | None
    log_level: str
    log_format: str
    shutdown_grace_seconds: float
    call_timeout_seconds: float
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """This service's listen address."""
        return self.addresses[self.service]

    def sqlite_url(self, name: str | None = None) -> str:
        """The embedded default database of this service."""
        path = self.state_dir / f"{name or self.service}.db"
        return f"sqlite:///{path}"

    def resolved_database_url(self) -> str:
        return self.database_url or self.sqlite_url()

    def get_str(self, key: str, default: str) -> str:
        """A service-specific variable such as ``FERRY_SERVE_TRITON_URL``."""
        return self.extra.get(key, default)

    def get_int(self, key: str, default: int, *, minimum: int | None = None) -> int:
        raw = self.extra.get(key)
        if raw is None or raw == "":
            return default
        return _int(key, raw, minimum=minimum)


def _read_config_file(path: str) -> dict[str, str]:
    file = pathlib.Path(path)
    if not file.is_file():
        raise SettingsError(f"FERRY_CONFIG_FILE: {path!r} is not a readable file")
    values: dict[str, str] = {}
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise SettingsError(f"FERRY_CONFIG_FILE: line {number} of {path!r} is not KEY=VALUE")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def _address(key: str, raw: str) -> str:
    match = _ADDRESS.match(raw.strip())
    if not match or not 0 <= int(match["port"]) <= 65535:
        raise SettingsError(f"{key}: {raw!r} is not an address of the form host:port")
    return raw.strip()


def _bool(key: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{key}: {raw!r} is not a boolean (use true or false)")


def _int(key: str, raw: str, *, minimum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key}: {raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{key}: {value} is below the minimum {minimum}")
    return value


def _positive_float(key: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key}: {raw!r} is not a number") from None
    if not value > 0:
        raise SettingsError(f"{key}: {raw!r} must be greater than 0")
    return value


def _existing_file(key: str, raw: str | None) -> pathlib.Path | None:
    if not raw:
        return None
    path = pathlib.Path(raw).expanduser()
    if not path.is_file():
        raise SettingsError(f"{key}: file {raw!r} does not exist")
    return path


def _object_store_url(raw: str) -> str:
    parsed = urlparse(raw)
    if parsed.scheme == "file" and parsed.path:
        return raw
    if parsed.scheme == "s3" and parsed.netloc:
        return raw
    raise SettingsError(f"FERRY_OBJECT_STORE_URL: {raw!r} is not file:///path or s3://bucket[/prefix]")


def _choice(key: str, raw: str, choices: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in choices:
        raise SettingsError(f"{key}: {raw!r} is not one of {', '.join(choices)}")
    return value


def load_settings(service: str, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings of ``service``.

    Args:
        service: one of :data:`SERVICES`.
        environ: the environment (``os.environ`` when omitted).

    Raises:
        SettingsError: a variable is malformed; the message names it and its value.
    """
    if service not in SERVICES:
        raise SettingsError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    env: dict[str, str] = dict(os.environ if environ is None else environ)
    if env.get("FERRY_CONFIG_FILE"):
        env = {**_read_config_file(env["FERRY_CONFIG_FILE"]), **env}

    addresses = {
        name: _address(f"FERRY_{name.upper()}_ADDRESS", env.get(f"FERRY_{name.upper()}_ADDRESS") or default)
        for name, default in DEFAULT_ADDRESSES.items()
    }
    state_dir = pathlib.Path(env.get("FERRY_STATE_DIR") or "./.ferry").expanduser().resolve()
    object_store_url = _object_store_url(env.get("FERRY_OBJECT_STORE_URL") or (state_dir / "objects").as_uri())
    s3 = S3Settings(
        endpoint=env.get("FERRY_S3_ENDPOINT", "127.0.0.1:9000"),
        access_key=env.get("FERRY_S3_ACCESS_KEY", "minioadmin"),
        secret_key=env.get("FERRY_S3_SECRET_KEY", "minioadmin"),
        secure=_bool("FERRY_S3_SECURE", env.get("FERRY_S3_SECURE", "false")),
    )
    if object_store_url.startswith("s3://"):
        _address("FERRY_S3_ENDPOINT", s3.endpoint)

    tls = TlsSettings(
        cert_file=_existing_file("FERRY_TLS_CERT_FILE", env.get("FERRY_TLS_CERT_FILE")),
        key_file=_existing_file("FERRY_TLS_KEY_FILE", env.get("FERRY_TLS_KEY_FILE")),
        client_ca_file=_existing_file("FERRY_TLS_CLIENT_CA_FILE", env.get("FERRY_TLS_CLIENT_CA_FILE")),
        ca_file=_existing_file("FERRY_TLS_CA_FILE", env.get("FERRY_TLS_CA_FILE")),
    )
    if (tls.cert_file is None) != (tls.key_file is None):
        raise SettingsError("FERRY_TLS_CERT_FILE and FERRY_TLS_KEY_FILE must be set together")
    if tls.client_ca_file is not None and tls.cert_file is None:
        raise SettingsError("FERRY_TLS_CLIENT_CA_FILE (mTLS) needs FERRY_TLS_CERT_FILE and FERRY_TLS_KEY_FILE")

    otlp = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true" or env.get("OTEL_TRACES_EXPORTER") == "none":
        otlp = None
    elif not otlp:
        otlp = addresses["monitor"]

    prefix = f"FERRY_{service.upper()}_"
    extra = {key: value for key, value in env.items() if key.startswith(prefix)}
    database_url = env.get(f"{prefix}DATABASE_URL") or None

    return Settings(
        service=service,
        addresses=addresses,
        state_dir=state_dir,
        database_url=database_url,
        object_store_url=object_store_url,
        s3=s3,
        auth_tokens_file=_existing_file("FERRY_AUTH_TOKENS_FILE", env.get("FERRY_AUTH_TOKENS_FILE")),
        auth_token=env.get("FERRY_AUTH_TOKEN") or None,
        tls=tls,
        otlp_endpoint=otlp,
        log_level=_choice("FERRY_LOG_LEVEL", env.get("FERRY_LOG_LEVEL", "info"), ("debug", "info", "warning", "error")),
        log_format=_choice("FERRY_LOG_FORMAT", env.get("FERRY_LOG_FORMAT", "auto"), ("auto", "json", "console")),
        shutdown_grace_seconds=_positive_float(
            "FERRY_SHUTDOWN_GRACE_SECONDS", env.get("FERRY_SHUTDOWN_GRACE_SECONDS", "10")
        ),
        call_timeout_seconds=_positive_float("FERRY_CALL_TIMEOUT_SECONDS", env.get("FERRY_CALL_TIMEOUT_SECONDS", "30")),
        extra=extra,
    )
