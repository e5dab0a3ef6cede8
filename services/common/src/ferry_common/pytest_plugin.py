"""Pytest fixtures every Ferry test suite shares (registered as a pytest11 plugin).

- ``postgres_url``: a fresh database on the PostgreSQL server that ``.ci/run`` starts
  (``FERRY_TEST_POSTGRES_DSN``, default ``postgresql://ferry:ferry@127.0.0.1:5432/postgres``),
  dropped afterwards.
- ``s3_server`` / ``s3_endpoint`` / ``s3_env``: a real S3 server on loopback for the whole
  session, and the ``FERRY_*`` variables that point a service at a fresh bucket on it (the
  bucket is emptied and removed after the test). The server is Ceph's S3 gateway (radosgw
  in front of one monitor and one memstore OSD, ``scripts/ceph-rgw.sh``) when the Ceph
  binaries are installed (``scripts/ensure-ceph.sh``): real signature checks, real multipart
  semantics. Without them it is ``moto_server``, and the run says so (report header and a
  warning). ``FERRY_TEST_S3=rgw`` requires Ceph; ``FERRY_TEST_S3=moto`` picks moto.
- ``moto_s3_endpoint`` / ``moto_s3_env``: always a ``moto_server`` of the test session's own,
  for tests that need what only moto does or a server they may break.

Under pytest-xdist the workers share one Ceph cluster: the first worker starts it under a
file lock in the run's shared temporary directory, each worker adds its pid to the
cluster's owners, and the last one to finish stops it (a watchdog stops it as well once
every owner has died).

``free_port`` is re-exported from :mod:`ferry_common.process` (the one copy).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import pytest

from ferry_common.process import free_port, pid_alive, wait_port

if TYPE_CHECKING:
    from minio import Minio

__all__ = [
    "S3Server",
    "free_port",
    "moto_s3_endpoint",
    "moto_s3_env",
    "moto_s3_server",
    "postgres_url",
    "s3_endpoint",
    "s3_env",
    "s3_server",
]

DEFAULT_DSN = "postgresql://ferry:ferry@127.0.0.1:5432/postgres"
CEPH_BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph")
# services/common/src/ferry_common/pytest_plugin.py -> the repository root
CEPH_SCRIPT = pathlib.Path(__file__).resolve().parents[4] / "scripts" / "ceph-rgw.sh"
CEPH_START_TIMEOUT_S = 300


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


# ------------------------------------------------------------------ S3


@dataclass(frozen=True)
class S3Server:
    """An S3 endpoint for the tests: ``host:port`` and the keys of its one user."""

    endpoint: str
    access_key: str
    secret_key: str
    kind: str  # "ceph-rgw" or "moto"

    def client(self) -> Minio:
        """A ``minio.Minio`` client of this server, with its keys."""
        from minio import Minio

        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False)

    def env(self, bucket: str) -> dict[str, str]:
        """``FERRY_*`` variables pointing a service at ``bucket`` (under the prefix ``ferry``)."""
        return {
            "FERRY_OBJECT_STORE_URL": f"s3://{bucket}/ferry",
            "FERRY_S3_ENDPOINT": self.endpoint,
            "FERRY_S3_ACCESS_KEY": self.access_key,
            "FERRY_S3_SECRET_KEY": self.secret_key,
            "FERRY_S3_SECURE": "false",
        }


def s3_choice() -> tuple[str, str]:
    """(``"ceph-rgw"`` or ``"moto"``, why): ``FERRY_TEST_S3`` and what is installed decide."""
    wanted = os.environ.get("FERRY_TEST_S3", "auto").strip().lower() or "auto"
    if wanted not in {"auto", "rgw", "moto"}:
        raise pytest.UsageError(f"FERRY_TEST_S3={wanted!r}: expected auto, rgw or moto")
    if wanted == "moto":
        return "moto", "FERRY_TEST_S3=moto"
    missing = [name for name in CEPH_BINARIES if shutil.which(name) is None]
    if not missing and CEPH_SCRIPT.is_file():
        return "ceph-rgw", "the Ceph binaries are installed"
    why = (
        f"Ceph is not installed (no {', '.join(missing)}; scripts/ensure-ceph.sh installs it)"
        if missing
        else f"{CEPH_SCRIPT} is missing"
    )
    if wanted == "rgw":
        raise pytest.UsageError(f"FERRY_TEST_S3=rgw, but {why}")
    return "moto", why


def pytest_report_header(config: pytest.Config) -> str:
    kind, why = s3_choice()
    if kind == "ceph-rgw":
        return "S3 test server: Ceph RGW (radosgw + memstore OSD on loopback, scripts/ceph-rgw.sh)"
    return f"S3 test server: moto_server, NOT Ceph RGW: {why}"


@contextlib.contextmanager
def _moto() -> Iterator[S3Server]:
    """A moto S3 server on a free loopback port (it accepts any keys)."""
    port = free_port()
    exe = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, process=proc, timeout=30)
        yield S3Server(f"127.0.0.1:{port}", "test", "test", "moto")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# Each worker's watchdog of the cluster it started (scripts/ceph-rgw.sh watch).
_WATCHDOGS: list[subprocess.Popen[bytes]] = []


def _write_owners(path: pathlib.Path, pids: list[int]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{pid}\n" for pid in pids))
    tmp.replace(path)  # the watchdog reads it without the lock


def _owners(path: pathlib.Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split() if line.strip()]
    except FileNotFoundError:
        return []


def _ceph(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CEPH_SCRIPT), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def _shared_rgw(root: pathlib.Path) -> Iterator[S3Server]:
    """The run's one Ceph RGW: started by the first worker to ask, stopped by the last one."""
    from filelock import FileLock

    cluster = root / "ceph-rgw"
    state_file = root / "ceph-rgw.json"
    owners = cluster / "owners"
    me = os.getpid()
    with FileLock(str(root / "ceph-rgw.lock"), timeout=CEPH_START_TIMEOUT_S + 60):
        live = [pid for pid in _owners(owners) if pid_alive(pid)]
        if state_file.exists() and live:
            server = S3Server(**json.loads(state_file.read_text()))
        else:
            if state_file.exists():  # a cluster whose owners all died: the watchdog may not have run yet
                _ceph("down", str(cluster))
                state_file.unlink()
            keys = {"RGW_ACCESS_KEY": "ferry-test", "RGW_SECRET_KEY": secrets.token_hex(16)}
            for attempt in range(2):  # a second time on other ports: a free port can be taken meanwhile
                rgw_port, mon_port = free_port(), free_port()
                while mon_port == rgw_port:
                    mon_port = free_port()
                ports = {"RGW_PORT": str(rgw_port), "MON_PORT": str(mon_port)}
                try:
                    result = _ceph("up", str(cluster), env={**keys, **ports}, timeout=CEPH_START_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    _ceph("down", str(cluster))
                    raise RuntimeError(f"scripts/ceph-rgw.sh up took over {CEPH_START_TIMEOUT_S} s") from None
                if result.returncode == 0:
                    break
                if attempt == 1:
                    raise RuntimeError(
                        f"scripts/ceph-rgw.sh up {cluster} failed (exit {result.returncode}; logs in"
                        f" {cluster}/log):\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
                    )
            server = S3Server(f"127.0.0.1:{rgw_port}", keys["RGW_ACCESS_KEY"], keys["RGW_SECRET_KEY"], "ceph-rgw")
            state_file.write_text(json.dumps(asdict(server)))
            _write_owners(owners, [me])
            live = []
            _WATCHDOGS.append(
                subprocess.Popen(
                    [str(CEPH_SCRIPT), "watch", str(cluster)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        if live:
            _write_owners(owners, [*live, me])
    try:
        yield server
    finally:
        with FileLock(str(root / "ceph-rgw.lock"), timeout=CEPH_START_TIMEOUT_S + 60):
            rest = [pid for pid in _owners(owners) if pid != me and pid_alive(pid)]
            if rest:
                _write_owners(owners, rest)
            else:
                _ceph("down", str(cluster))
                state_file.unlink(missing_ok=True)
        for watchdog in _WATCHDOGS:  # ended by "down" (here or by another worker's), reaped here
            with contextlib.suppress(subprocess.TimeoutExpired):
                watchdog.wait(timeout=0 if rest else 10)


def _shared_root(factory: pytest.TempPathFactory) -> pathlib.Path:
    """A directory every xdist worker of this run sees (the base temp dir without xdist)."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The session's S3 server: Ceph RGW when installed (shared by xdist workers), else moto."""
    kind, why = s3_choice()
    if kind == "ceph-rgw":
        with _shared_rgw(_shared_root(tmp_path_factory)) as server:
            yield server
        return
    warnings.warn(f"S3 tests run against moto_server, not Ceph RGW: {why}", stacklevel=1)
    with _moto() as server:
        yield server


@pytest.fixture(scope="session")
def s3_endpoint(s3_server: S3Server) -> str:
    """``host:port`` of the session's S3 server (its keys: ``s3_server``)."""
    return s3_server.endpoint


def _empty_and_remove(server: S3Server, bucket: str) -> None:
    """Remove a test bucket with everything in it, incomplete multipart uploads included.

    On RGW the data of deleted multipart objects is freed by its garbage collector, which
    ``scripts/ceph-rgw.sh`` runs every few seconds: memstore keeps the OSD's objects in RAM.
    """
    from minio.deleteobjects import DeleteObject
    from minio.error import S3Error

    client = server.client()
    try:
        if not client.bucket_exists(bucket):
            return
        while True:
            listed = client._list_multipart_uploads(bucket)  # minio 7.2 has no public call for these
            for upload in listed.uploads:
                if upload.object_name and upload.upload_id:
                    client._abort_multipart_upload(bucket, upload.object_name, upload.upload_id)
            if not listed.is_truncated:
                break
        names = [obj.object_name for obj in client.list_objects(bucket, recursive=True) if obj.object_name]
        errors = list(client.remove_objects(bucket, (DeleteObject(name) for name in names)))
        if errors:
            raise RuntimeError(f"deleting {len(errors)} objects failed: {errors[0]}")
        client.remove_bucket(bucket)
    except (S3Error, RuntimeError, OSError) as exc:
        warnings.warn(f"could not remove the test bucket {bucket!r} at {server.endpoint}: {exc}", stacklevel=1)


@pytest.fixture
def s3_env(s3_server: S3Server) -> Iterator[dict[str, str]]:
    """``FERRY_*`` variables for a fresh bucket on the session's S3 server (removed afterwards)."""
    bucket = f"ferry-test-{uuid.uuid4().hex[:10]}"
    s3_server.client().make_bucket(bucket)
    yield s3_server.env(bucket)
    _empty_and_remove(s3_server, bucket)


@pytest.fixture(scope="session")
def moto_s3_server() -> Iterator[S3Server]:
    """A moto S3 server of this session's own (any keys pass; a test may break it)."""
    with _moto() as server:
        yield server


@pytest.fixture(scope="session")
def moto_s3_endpoint(moto_s3_server: S3Server) -> str:
    """``host:port`` of the session's moto server."""
    return moto_s3_server.endpoint


@pytest.fixture
def moto_s3_env(moto_s3_server: S3Server) -> dict[str, str]:
    """``FERRY_*`` variables for a fresh bucket on the session's moto server."""
    bucket = f"ferry-test-{uuid.uuid4().hex[:10]}"
    moto_s3_server.client().make_bucket(bucket)
    return moto_s3_server.env(bucket)
