"""Ferry's Python client library and the ``ferry`` command line.

Typed clients, blocking here and for asyncio in :mod:`ferry_sdk.aio`:

    from ferry_sdk import IngestClient, MonitorClient, RegistryClient, ServeClient, TrainClient
    from ferry_sdk.errors import NotFound

Every failed call raises a :class:`ferry_sdk.errors.FerryError` subclass.
:func:`spawn_and_wait` runs a service as a local process (tests, the demo, ``ferry up``).
"""

from ferry_sdk import errors
from ferry_sdk._sources import Progress
from ferry_sdk._watch import Backoff
from ferry_sdk.errors import FerryError
from ferry_sdk.ingest import IngestClient
from ferry_sdk.monitor import AlertWatch, MonitorClient
from ferry_sdk.registry import AliasWatch, RegistryClient
from ferry_sdk.serve import ServeClient
from ferry_sdk.spawn import ServiceProcess, SpawnError, free_port, spawn_and_wait
from ferry_sdk.train import TrainClient, TrainingJobWatch

__all__ = [
    "AlertWatch",
    "AliasWatch",
    "Backoff",
    "FerryError",
    "IngestClient",
    "MonitorClient",
    "Progress",
    "RegistryClient",
    "ServeClient",
    "ServiceProcess",
    "SpawnError",
    "TrainClient",
    "TrainingJobWatch",
    "errors",
    "free_port",
    "spawn_and_wait",
]
