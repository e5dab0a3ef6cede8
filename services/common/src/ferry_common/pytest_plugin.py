"""Pytest fixtures every Ferry test suite shares (registered as a pytest11 plugin).

- ``postgres_url``: a fresh database on the PostgreSQL server that ``.ci/run`` starts
  (``FERRY_TEST_POSTGRES_DSN``, default ``postgresql://ferry:ferry@127.0.0.1:5432/postgres``),
  dropped afterwards.
- ``s3_endpoint`` / ``s3_env``: a real S3 endpoint on loopback (``moto_server``), and the
  ``FERRY_*`` variables that point a service at a fresh bucket on it.

``free_port`` is re-exported from :mod:`ferry_common.process` (the one copy).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from ferry_common.process import free_port, wait_port

__all__ = ["free_port", "postgres_url", "s3_endpoint", "s3_env"]

DEFAULT_DSN = "postgresql://ferry:ferry@127.0.0.1:5432/postgres"


def _admin_dsn() -> str:
    return os.environ.get("FERRY_TEST_POSTGRES_DSN", DEFAULT_DSN)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a new, empty PostgreSQL database."""
    import psycopg

    admin = _admin_dsn()
    name = f"ferry_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """``host:port`` of a moto S3 server on loopback for the whole session."""
    port = free_port()
    exe = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, process=proc, timeout=30)
    except RuntimeError:
        proc.kill()
        proc.wait()
        raise
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_env(s3_endpoint: str) -> dict[str, str]:
    """``FERRY_*`` variables for a fresh bucket on the moto endpoint."""
    from minio import Minio

    bucket = f"ferry-test-{uuid.uuid4().hex[:10]}"
    Minio(s3_endpoint, access_key="test", secret_key="test", secure=False).make_bucket(bucket)
    return {
        "FERRY_OBJECT_STORE_URL": f"s3://{bucket}/ferry",
        "FERRY_S3_ENDPOINT": s3_endpoint,
        "FERRY_S3_ACCESS_KEY": "test",
        "FERRY_S3_SECRET_KEY": "test",
        "FERRY_S3_SECURE": "false",
    }
