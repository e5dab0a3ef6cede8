"""Ferry's asyncio clients: the same methods as :mod:`ferry_sdk`'s, as coroutines.

from ferry_sdk import aio

async with aio.RegistryClient() as registry:
    version = await registry.resolve_alias("models/churn/aliases/production")
"""

from ferry_sdk.aio._ingest import IngestClient
from ferry_sdk.aio._monitor import AlertWatch, MonitorClient
from ferry_sdk.aio._registry import AliasWatch, RegistryClient
from ferry_sdk.aio._serve import ServeClient
from ferry_sdk.aio._train import TrainClient, TrainingJobWatch

__all__ = [
    "AlertWatch",
    "AliasWatch",
    "IngestClient",
    "MonitorClient",
    "RegistryClient",
    "ServeClient",
    "TrainClient",
    "TrainingJobWatch",
]
