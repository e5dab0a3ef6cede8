"""The control plane: ``ferry.serve.v1.ServeService`` (deployments).

Create and Update check the model and its targets in the registry before anything is
stored, store the deployment, then apply it (load, warm, route) before answering: the
answer shows ``state`` READY with ``served_versions``, or FAILED with the reason (traffic
then stays where it was), or PENDING / UPDATING with the reason and ``retrying in N s`` when
the registry or Triton became unreachable meanwhile (the deployer retries by itself). Other
replicas pick the change up from the shared database.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from ferry.serve.v1 import serve_pb2 as pb
from ferry.serve.v1 import serve_pb2_grpc
from ferry_common.database import DatabaseRunner
from ferry_common.errors import NotFound
from ferry_serve import messages as m
from ferry_serve.deployer import Deployer
from ferry_serve.domain import Deployment, ServedVersion
from ferry_serve.routing import Router
from ferry_serve.store.base import ServeStore

__all__ = ["ServeServicer"]


class ServeServicer(serve_pb2_grpc.ServeServiceServicer):
    """Deployments: stored in serve's database, applied by the :class:`Deployer`."""

    def __init__(self, store: ServeStore, runner: DatabaseRunner, deployer: Deployer, router: Router) -> None:
        self._store = store
        self._runner = runner
        self._deployer = deployer
        self._router = router

    def _served(self, deployment: Deployment) -> list[ServedVersion]:
        routes = self._router.get(deployment.deployment_id)
        return routes.served() if routes is not None else []

    def _proto(self, deployment: Deployment) -> pb.Deployment:
        return m.deployment_to_proto(deployment, self._served(deployment))

    async def CreateDeployment(self, request: pb.CreateDeploymentRequest, context: Any) -> pb.Deployment:
        draft = m.deployment_from_create(request)
        await self._deployer.check(draft)
        stored = await self._runner.write(self._store.create, draft)
        return self._proto(await self._deployer.apply(stored))

    async def GetDeployment(self, request: pb.GetDeploymentRequest, context: Any) -> pb.Deployment:
        deployment_id = m.deployment_ref("name", request.name)
        return self._proto(await self._runner.read(self._store.get, deployment_id))

    async def ListDeployments(self, request: pb.ListDeploymentsRequest, context: Any) -> pb.ListDeploymentsResponse:
        items, token = await self._runner.read(self._store.list_page, request.page_size, request.page_token)
        return pb.ListDeploymentsResponse(deployments=[self._proto(d) for d in items], next_page_token=token)

    async def UpdateDeployment(self, request: pb.UpdateDeploymentRequest, context: Any) -> pb.Deployment:
        deployment_id = m.deployment_ref("deployment.name", request.deployment.name)
        try:
            current = await self._runner.read(self._store.get, deployment_id)
        except NotFound as error:
            raise NotFound(error.message.replace("name:", "deployment.name:", 1), field="deployment.name") from None
        changes = m.apply_update(current, request)
        await self._deployer.check(changes.apply(current))
        updated = await self._runner.write(self._store.update, deployment_id, changes, request.deployment.etag)
        if self._deployer.applied_revision(deployment_id) >= updated.revision:
            return self._proto(updated)  # nothing changed
        return self._proto(await self._deployer.apply(updated))

    async def DeleteDeployment(self, request: pb.DeleteDeploymentRequest, context: Any) -> empty_pb2.Empty:
        deployment_id = m.deployment_ref("name", request.name)
        await self._runner.write(self._store.delete, deployment_id)
        await self._deployer.remove(deployment_id)
        return empty_pb2.Empty()
