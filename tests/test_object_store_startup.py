"""ferry-ingest and ferry-registry check the object store at start-up: refused keys stop them.

Against Ceph RGW (the tests' S3 server when Ceph is installed), which checks every
request's signature: a wrong secret key or an unknown access key makes the service exit
with code 2 and a message naming the two variables and the endpoint, never the secret.
moto accepts any keys, so there these tests are skipped (and say why).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from ferry_common.objectstore import open_object_store
from ferry_common.process import spawn_and_wait
from ferry_common.pytest_plugin import S3Server, free_port
from ferry_common.settings import load_settings

BIN = pathlib.Path(sys.executable).parent
WRONG_SECRET = "not-the-secret-0123456789"


def _start(service: str, env: dict[str, str], state: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / f"ferry-{service}")],
        env={
            **os.environ,
            **env,
            "FERRY_STATE_DIR": str(state),
            "OTEL_TRACES_EXPORTER": "none",
            f"FERRY_{service.upper()}_ADDRESS": f"127.0.0.1:{free_port()}",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("service", ["ingest", "registry"])
@pytest.mark.parametrize(
    ("keys", "code"),
    [
        ({"FERRY_S3_SECRET_KEY": WRONG_SECRET}, "SignatureDoesNotMatch"),
        ({"FERRY_S3_ACCESS_KEY": "nobody", "FERRY_S3_SECRET_KEY": WRONG_SECRET}, "InvalidAccessKeyId"),
    ],
    ids=["wrong-secret", "unknown-access-key"],
)
def test_refused_keys_stop_the_service_at_start_up(
    service: str,
    keys: dict[str, str],
    code: str,
    s3_server: S3Server,
    s3_env: dict[str, str],
    tmp_path: pathlib.Path,
) -> None:
    if s3_server.kind != "ceph-rgw":
        pytest.skip(f"the S3 test server is {s3_server.kind}, which checks no keys (Ceph RGW does)")
    result = _start(service, {**s3_env, **keys}, tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    message = f"FERRY_S3_ACCESS_KEY / FERRY_S3_SECRET_KEY: rejected by {s3_server.endpoint} ({code})"
    assert message in result.stderr, result.stderr[-3000:]
    assert WRONG_SECRET not in result.stderr and WRONG_SECRET not in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("service", ["ingest", "registry"])
def test_the_right_keys_start_the_service(service: str, s3_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    """The control: with the fixture's keys the same start-up passes its object-store check."""
    with spawn_and_wait(service, env={**s3_env, "FERRY_STATE_DIR": str(tmp_path), "OTEL_TRACES_EXPORTER": "none"}):
        pass


def test_moto_checks_no_keys_which_is_why_s3_tests_use_rgw(moto_s3_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    """The moto fixture works, and shows the gap RGW closes: moto takes a wrong secret."""
    env = {**moto_s3_env, "FERRY_S3_SECRET_KEY": WRONG_SECRET, "FERRY_STATE_DIR": str(tmp_path)}
    open_object_store(load_settings("ingest", env)).check()
