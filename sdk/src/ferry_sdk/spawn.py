"""Start a Ferry service as a child process, wait until it serves, stop it cleanly.

The implementation lives in :mod:`ferry_common.process` (services' own test helpers use
it too, and ferry_common sits below the SDK); this is its public home for users of the
SDK, the ``ferry`` CLI, the demo and benchmarks.
"""

from ferry_common.process import (
    ServiceProcess,
    SpawnError,
    closed_address,
    dial_address,
    executable,
    free_port,
    health_status,
    pid_alive,
    spawn,
    spawn_and_wait,
    stop_all,
    wait_port,
)

__all__ = [
    "ServiceProcess",
    "SpawnError",
    "closed_address",
    "dial_address",
    "executable",
    "free_port",
    "health_status",
    "pid_alive",
    "spawn",
    "spawn_and_wait",
    "stop_all",
    "wait_port",
]
