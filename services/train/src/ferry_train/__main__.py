"""``ferry-train``: serve ferry.train.v1.TrainService."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from ferry.train.v1 import train_pb2, train_pb2_grpc
from ferry_common.server import ServiceDefinition, run
from ferry_common.settings import Settings

SERVICE_NAME = train_pb2.DESCRIPTOR.services_by_name["TrainService"].full_name


async def build(settings: Settings, tracer_provider: TracerProvider) -> ServiceDefinition:
    # RPCs answer UNIMPLEMENTED until the train issue fills them.
    servicer = train_pb2_grpc.TrainServiceServicer()
    return ServiceDefinition(
        register=lambda server: train_pb2_grpc.add_TrainServiceServicer_to_server(servicer, server),
        service_names=[SERVICE_NAME],
    )


def main() -> None:
    run("train", build)


if __name__ == "__main__":
    main()
