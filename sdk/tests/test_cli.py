"""`ferry up` / `ferry status` / `ferry down` drive the real stack as a user would."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from ferry_common.pytest_plugin import free_port

FERRY = str(pathlib.Path(sys.executable).parent / "ferry")
SERVICES = ("registry", "ingest", "train", "serve", "monitor")


@pytest.mark.slow
def test_up_status_down(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "FERRY_STATE_DIR": str(tmp_path), "OTEL_TRACES_EXPORTER": "none"}
    env.update({f"FERRY_{name.upper()}_ADDRESS": f"127.0.0.1:{free_port()}" for name in SERVICES})
    try:
        up = subprocess.run([FERRY, "up"], env=env, capture_output=True, text=True, timeout=180)
        assert up.returncode == 0, up.stderr
        for name in SERVICES:
            assert f"ferry-{name}" in up.stderr
        status = subprocess.run([FERRY, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0
        assert status.stdout.count("SERVING") == 5
        assert (tmp_path / "logs" / "registry.log").stat().st_size > 0
    finally:
        down = subprocess.run([FERRY, "down"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0
    assert down.stderr.count("stopped") == 5
    after = subprocess.run([FERRY, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert after.returncode == 1
    assert after.stdout.count("DOWN") == 5


def test_up_rejects_an_unknown_service(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "FERRY_STATE_DIR": str(tmp_path)}
    result = subprocess.run([FERRY, "up", "billing"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "unknown service 'billing'" in result.stderr
