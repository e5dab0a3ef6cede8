"""``ferry-train``: serve ferry.train.v1.TrainService."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from ferry.train.v1 import train_pb2, train_pb2_grpc
from ferry_common.server import ServiceDefinition, run, unimplemented
from ferry_common.settings import Settings

SERVICE = train_pb2.DESCRIPTOR.services_by_name["TrainService"]
SERVICE_NAME = SERVICE.full_name


async def build(settings: Settings, tracer_provider: TracerProvider) -> ServiceDefinition:
    # RPCs answer UNIMPLEMENTED until the train issue fills them.
    return unimplemented((train_pb2_grpc, SERVICE))


def main() -> None:
    run("train", build)


if __name__ == "__main__":
    main()
