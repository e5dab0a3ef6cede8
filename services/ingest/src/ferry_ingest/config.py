"""Ingest's own settings: the ``FERRY_INGEST_*`` variables, read once at start.

Every variable is listed with its default in ``services/ingest/README.md``.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import yaml
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ferry_common.names import ID_PATTERN
from ferry_common.settings import Settings, SettingsError

__all__ = ["IngestConfig", "SqlConnection", "load_sql_connections"]

MIB = 1024 * 1024
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_CONNECTION_KEYS = {"url", "password_env"}


@dataclass(frozen=True)
class SqlConnection:
    """A database the operator lets SQL imports read (``FERRY_INGEST_CONNECTIONS_FILE``).

    Attributes:
        name: what ``sql.connection`` names it by.
        url: SQLAlchemy URL, password included (never echoed: use ``redacted_url``).
    """

    name: str
    url: URL = field(repr=False)


@dataclass(frozen=True)
class IngestConfig:
    """Tunables of the ingest service.

    Attributes:
        tmp_dir: where uploads are spooled and Parquet is written before upload.
        read_chunk_bytes: size of the ``chunk`` messages ReadDataset sends.
        infer_bytes: how much of a CSV/JSONL source column types are inferred from.
        max_distinct: distinct values tracked exactly per categorical column.
        sql_batch_rows: rows fetched per round trip of a SQL import.
        max_upload_bytes: uploads above this fail with RESOURCE_EXHAUSTED (0: no limit).
        import_file_roots: directories ``file://`` imports may read (empty: file imports are off).
        import_s3_buckets: buckets ``s3://`` imports may read (empty: S3 imports are off).
        sql_connections: the databases SQL imports may name, by name.
        allow_sql_urls: whether a request may carry its own ``sql.url`` (never sqlite).
        sql_statement_timeout_seconds: server-side limit of each SQL statement/fetch (0: none).
        transform_max_rows: rows a deduplicate step or an exact median may hold (RESOURCE_EXHAUSTED above).
    """

    tmp_dir: pathlib.Path
    read_chunk_bytes: int = 1 * MIB
    infer_bytes: int = 8 * MIB
    max_distinct: int = 65_536
    sql_batch_rows: int = 10_000
    max_upload_bytes: int = 0
    import_file_roots: tuple[pathlib.Path, ...] = ()
    import_s3_buckets: frozenset[str] = frozenset()
    sql_connections: Mapping[str, SqlConnection] = field(default_factory=dict)
    allow_sql_urls: bool = False
    sql_statement_timeout_seconds: int = 300
    transform_max_rows: int = 10_000_000

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> IngestConfig:
        """Read the ``FERRY_INGEST_*`` extras of ``settings``.

        ``environ`` (``os.environ`` when omitted) holds the variables that the
        connections file's ``password_env`` entries name.

        Raises:
            SettingsError: a variable or the connections file is malformed (the message names it).
        """
        tmp = settings.get_str("FERRY_INGEST_TMP_DIR", "")
        roots_raw = settings.get_str("FERRY_INGEST_IMPORT_FILE_ROOTS", "")
        roots = tuple(pathlib.Path(p).expanduser().resolve() for p in roots_raw.split(":") if p.strip())
        for root in roots:
            if not root.is_dir():
                raise SettingsError(f"FERRY_INGEST_IMPORT_FILE_ROOTS: {str(root)!r} is not a directory")
        connections_file = settings.get_str("FERRY_INGEST_CONNECTIONS_FILE", "")
        environ = os.environ if environ is None else environ
        connections = (
            load_sql_connections(pathlib.Path(connections_file).expanduser(), environ) if connections_file else {}
        )
        return cls(
            tmp_dir=pathlib.Path(tmp).expanduser().resolve() if tmp else settings.state_dir / "tmp" / "ingest",
            read_chunk_bytes=settings.get_int("FERRY_INGEST_READ_CHUNK_BYTES", cls.read_chunk_bytes, minimum=4096),
            infer_bytes=settings.get_int("FERRY_INGEST_INFER_BYTES", cls.infer_bytes, minimum=65536),
            max_distinct=settings.get_int("FERRY_INGEST_PROFILE_MAX_DISTINCT", cls.max_distinct, minimum=100),
            sql_batch_rows=settings.get_int("FERRY_INGEST_SQL_BATCH_ROWS", cls.sql_batch_rows, minimum=1),
            max_upload_bytes=settings.get_int("FERRY_INGEST_MAX_UPLOAD_BYTES", 0, minimum=0),
            import_file_roots=roots,
            import_s3_buckets=_s3_buckets(settings),
            sql_connections=connections,
            allow_sql_urls=_flag(settings, "FERRY_INGEST_ALLOW_SQL_URLS"),
            sql_statement_timeout_seconds=settings.get_int(
                "FERRY_INGEST_SQL_STATEMENT_TIMEOUT_SECONDS", cls.sql_statement_timeout_seconds, minimum=0
            ),
            transform_max_rows=settings.get_int("FERRY_INGEST_TRANSFORM_MAX_ROWS", cls.transform_max_rows, minimum=1),
        )


def _flag(settings: Settings, key: str) -> bool:
    raw = settings.get_str(key, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{key}: {raw!r} is not a boolean (use true or false)")


def _s3_buckets(settings: Settings) -> frozenset[str]:
    """``FERRY_INGEST_IMPORT_S3_BUCKETS``, else the object store's own bucket (none on a local store)."""
    key = "FERRY_INGEST_IMPORT_S3_BUCKETS"
    raw = settings.get_str(key, "")
    if not raw.strip():
        store = urlparse(settings.object_store_url)
        return frozenset({store.netloc}) if store.scheme == "s3" and store.netloc else frozenset()
    buckets = frozenset(b.strip() for b in raw.split(",") if b.strip())
    for bucket in buckets:
        if "/" in bucket or ":" in bucket:
            raise SettingsError(f"{key}: {bucket!r} is not a bucket name (list bucket names, comma-separated)")
    return buckets


def load_sql_connections(path: pathlib.Path, environ: Mapping[str, str]) -> dict[str, SqlConnection]:
    """The connections of a YAML connections file, passwords taken from ``environ``.

    The file looks like::

        connections:
          warehouse:
            url: postgresql+psycopg://reader@db.internal:5432/sales
            password_env: WAREHOUSE_PASSWORD   # optional: the variable holding the password
          shop:
            url: sqlite:////srv/data/shop.db   # relative paths are relative to this file

    A password written into ``url`` is refused: it belongs in the environment.

    Raises:
        SettingsError: the file is unreadable or malformed; the message names the file
            and the problem (never a password).
    """
    where = f"FERRY_INGEST_CONNECTIONS_FILE {str(path)!r}"
    try:
        document: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SettingsError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise SettingsError(f"{where}: not valid YAML{at}") from None
    if (
        not isinstance(document, dict)
        or set(document) != {"connections"}
        or not isinstance(document["connections"], dict)
    ):
        raise SettingsError(f"{where}: expected one top-level key 'connections' mapping names to connections")
    connections: dict[str, SqlConnection] = {}
    for name, entry in document["connections"].items():
        if not isinstance(name, str) or not ID_PATTERN.fullmatch(name):
            raise SettingsError(
                f"{where}: connection name {name!r} is not an id (lowercase letters, digits and hyphens)"
            )
        connections[name] = _connection(where, path, name, entry, environ)
    return connections


def _connection(where: str, path: pathlib.Path, name: str, entry: Any, environ: Mapping[str, str]) -> SqlConnection:
    here = f"{where}: connection {name!r}"
    if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
        raise SettingsError(f"{here}: expected a mapping with a 'url' string")
    unknown = set(entry) - _CONNECTION_KEYS
    if unknown:
        raise SettingsError(
            f"{here}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
            f"(allowed: {', '.join(sorted(_CONNECTION_KEYS))})"
        )
    try:
        url = make_url(entry["url"])
    except (ArgumentError, ValueError):
        raise SettingsError(f"{here}: 'url' is not a SQLAlchemy URL") from None
    if url.password is not None:
        raise SettingsError(f"{here}: 'url' holds a password; name the variable holding it with 'password_env'")
    password_env = entry.get("password_env")
    if password_env is not None:
        if not isinstance(password_env, str) or not password_env:
            raise SettingsError(f"{here}: 'password_env' must name an environment variable")
        if password_env not in environ:
            raise SettingsError(f"{here}: environment variable {password_env} (password_env) is not set")
        url = url.set(password=environ[password_env])
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise SettingsError(f"{here}: a sqlite 'url' must name a database file (sqlite:////path/to/file.db)")
        url = url.set(database=str((path.parent / database).resolve()))
    return SqlConnection(name, url)
