"""``ferry-serve``: serve ferry.serve.v1.ServeService and Triton's inference protocol."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from tritonclient.grpc import service_pb2, service_pb2_grpc

from ferry.serve.v1 import serve_pb2, serve_pb2_grpc
from ferry_common.server import ServiceDefinition, run, unimplemented
from ferry_common.settings import Settings

SERVICE = serve_pb2.DESCRIPTOR.services_by_name["ServeService"]
INFERENCE_SERVICE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
SERVICE_NAME = SERVICE.full_name


async def build(settings: Settings, tracer_provider: TracerProvider) -> ServiceDefinition:
    # RPCs answer UNIMPLEMENTED until the serve issue fills them.
    return unimplemented((serve_pb2_grpc, SERVICE), (service_pb2_grpc, INFERENCE_SERVICE))


def main() -> None:
    run("serve", build)


if __name__ == "__main__":
    main()
