"""Property-based fuzzing of serve's two planes through real processes.

``ferry-registry`` and ``ferry-serve`` (with its embedded Triton) each run as a process of
their own (their real ``main()``: the ``grpc.aio`` server with the real interceptors, on a
free port, SQLite and local files), serve restarted when a call crashes it, and both
talked to through the generated stubs:

- ``ferry.serve.v1.ServeService`` (deployments);
- ``inference.GRPCInferenceService`` (Triton's protocol, ``tritonclient.grpc.service_pb2``),
  ``model_name`` being a deployment id.

Seeds: the registry holds ``iris`` (two ONNX versions of :func:`ferry_serve.testing.tiny_classifier`,
alias ``production`` on 1), ``broken`` (one version serve cannot run: a deployment of it is
FAILED at once, without loading anything) and ``empty`` (no version, no alias). Serve
holds deployment ``iris`` (primary: alias ``production``, canary: version 2 at 0 %, so both
versions answer) and ``doomed`` (of ``broken``: FAILED, no routes; what DeleteDeployment
aims at, made anew after a delete). Creates aim mostly at taken ids, missing models and
``broken``: a Create that loads versions costs about 2 s each, so the strategies keep them
rare.

Two tests per RPC (see :mod:`ferry_common.fuzzing`): hypothesis-built requests (all sane,
sane but for one bad field, or anything; ModelInfer gets inputs of random names,
datatypes, shapes, typed and raw contents, aimed at the seeded deployment or not), and a
sweep of each field of a sane request through the classic bad values.

Whatever the request:

- the status is never INTERNAL or UNKNOWN, and the call does not hang;
- the status message fits in the client's trailing metadata;
- the RPCs serve does not serve (repository, shared memory, trace, log, stream) answer
  UNIMPLEMENTED, and the served ones never do;
- a success names resources canonically and answers about the deployment asked for
  (ModelInfer: ``model_name`` echoed, ``model_version`` the number asked for);
- both planes still answer afterwards: health, a GetDeployment and a real ModelInfer on
  ``iris`` (so a request that kills Triton is caught), and the process still runs;
- a mutating call that fails leaves no trace. What is visible: every deployment as
  ListDeployments shows it (spec, ``state``, ``message``, ``served_versions``, ``etag``,
  times) and the Triton model repository's directory names (the versions loaded for
  deployments). Successful changes are undone (created deployments deleted, ``iris``
  updated back to its seed) so that the shrinker's replays meet the same state;
- after a change and its undo, the repository holds exactly the versions the deployments
  route to (retired versions are unloaded and removed, nothing half-loaded stays).

Requests Triton cannot take are refused by serve before it (``test_what_triton_cannot_take...``):
a ``classification`` of a BYTES output killed the whole Triton (SIGFPE); shared-memory
parameters answered UNAVAILABLE "retry"; 16 KB request ids, parameter keys and output
names came back quoted whole in Triton's errors, past a client's trailer limit.

Budgets (examples per RPC): 30, derandomized, in ``make test`` (``FERRY_FUZZ_EXAMPLES``
raises it); ``pytest -m fuzz`` runs the big budget (1000 per RPC, random seed).
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import serialize_byte_tensor

from ferry.registry.v1 import registry_pb2
from ferry.serve.v1 import serve_pb2 as pb
from ferry.serve.v1 import serve_pb2_grpc
from ferry_common import fuzzing
from ferry_common.fuzzing import OMIT, Call, ids, messages, resource_names
from ferry_sdk import RegistryClient
from ferry_sdk.spawn import ServiceProcess, closed_address, spawn_and_wait
from ferry_serve.testing import tiny_classifier

pytestmark = pytest.mark.xdist_group("triton")  # one Triton-heavy module per worker

SERVE = pb.DESCRIPTOR.services_by_name["ServeService"]
INFERENCE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
METHODS = {**SERVE.methods_by_name, **INFERENCE.methods_by_name}
# Not served by the gateway: the generated base class answers, nothing reaches Triton.
UNSERVED = {
    "ModelStreamInfer",
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister",
    "TraceSetting",
    "LogSettings",
}
MUTATING = {"CreateDeployment", "UpdateDeployment", "DeleteDeployment"}
DEPLOYMENT = "iris"  # the seeded deployment: read by the probe, never deleted
DOOMED = "doomed"  # what DeleteDeployment aims at (and nothing else does)
MODELS = ("iris", "broken", "empty")
ALIASES = ("production", "staging")
MAX_REQUEST_BYTES = 65536
SIGNATURE = registry_pb2.ModelSignature(
    inputs=[
        registry_pb2.TensorSpec(name="x", datatype="FP32", shape=[-1, 1]),
        registry_pb2.TensorSpec(name="color", datatype="BYTES", shape=[-1, 1]),
    ],
    outputs=[
        registry_pb2.TensorSpec(name="probabilities", datatype="FP32", shape=[-1, 3]),
        registry_pb2.TensorSpec(name="label", datatype="BYTES", shape=[-1, 1]),
    ],
)
# What `iris` is seeded with, and what an Update is undone to.
SEED = pb.Deployment(
    name=f"deployments/{DEPLOYMENT}",
    model="models/iris",
    primary=pb.TrafficTarget(alias="production"),
    canary=pb.TrafficSplit(target=pb.TrafficTarget(version=2), percent=0),
    batching=pb.Batching(),
    sample_rate=1.0,
)
SEED_PATHS = ["primary", "canary", "shadow", "batching", "sample_rate"]
DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "BYTES",
)

# ---------------------------------------------------------------------------- inputs


def _tensors(rows: int, raw: bool) -> tuple[list[service_pb2.ModelInferRequest.InferInputTensor], list[bytes]]:
    """The two inputs of ``iris`` for ``rows`` rows, as raw buffers or typed contents."""
    x = np.arange(rows, dtype=np.float32).reshape(rows, 1)
    colors = [b"red", b"green", b"blue", b"unseen", b""]
    color = np.array([[colors[i % len(colors)]] for i in range(rows)], dtype=np.object_).reshape(rows, 1)
    tensor = service_pb2.ModelInferRequest.InferInputTensor
    inputs = [
        tensor(name="x", datatype="FP32", shape=[rows, 1]),
        tensor(name="color", datatype="BYTES", shape=[rows, 1]),
    ]
    if raw:
        serialized = serialize_byte_tensor(color)
        return inputs, [x.tobytes(), serialized.item() if serialized.size else b""]
    inputs[0].contents.fp32_contents.extend(x.ravel().tolist())
    inputs[1].contents.bytes_contents.extend(color.ravel().tolist())
    return inputs, []


def valid_infer(model_version: str = "", rows: int = 1, raw: bool = True) -> service_pb2.ModelInferRequest:
    inputs, buffers = _tensors(rows, raw)
    return service_pb2.ModelInferRequest(
        model_name=DEPLOYMENT, model_version=model_version, inputs=inputs, raw_input_contents=buffers
    )


SANE_INPUTS, SANE_RAW = _tensors(1, True)

# ------------------------------------------------------------------------ strategies

Field = fuzzing.Field
sane_deployments = st.sampled_from((DEPLOYMENT, DEPLOYMENT, DOOMED, "nope"))
DEPLOYMENT_NAME = Field(
    fuzzing.well_formed_names("deployments/{deployment}", deployment=sane_deployments),
    resource_names("deployments/{deployment}", deployment=ids((DEPLOYMENT, DOOMED))),
)
DOOMED_NAME = Field(
    st.sampled_from((f"deployments/{DOOMED}", f"deployments/{DOOMED}", "deployments/nope")),
    resource_names("deployments/{deployment}", deployment=ids((DOOMED,))),
)
# Taken ids first (ALREADY_EXISTS after every check ran), a fresh one rarely: it loads.
CREATE_ID = Field(
    st.sampled_from((DEPLOYMENT, DOOMED, DEPLOYMENT, OMIT, "fresh")),
    ids((DEPLOYMENT, DOOMED)),
)
# `broken` first: a deployment of it is FAILED at once, nothing loads (cheap successes).
MODEL = Field(
    st.sampled_from(("models/broken", "models/iris", "models/nope", "models/empty", "models/broken")),
    resource_names("models/{model}", model=ids(MODELS)),
)
ALIAS = Field(st.sampled_from(ALIASES), ids(ALIASES))
VERSION = Field(st.sampled_from((1, 2, 3)), fuzzing.int_values(-(2**63), 2**63 - 1, (0, 1, 2, 3)))
PERCENT = Field(st.sampled_from((0, 10, 100)), fuzzing.int_values(-(2**31), 2**31 - 1, (-1, 0, 100, 101)))
SAMPLE_RATE = Field(st.sampled_from((0.0, 0.5, 1.0)), fuzzing.nasty_doubles())
BATCHING = {
    # Off first: batching on loads a Triton model of its own.
    "enabled": Field(st.sampled_from((False, False, True)), st.booleans()),
    "max_batch_size": Field(st.sampled_from((0, 8, 1024)), fuzzing.int_values(-(2**31), 2**31 - 1, (0, 1, 1024, 1025))),
    "max_queue_delay_microseconds": Field(
        st.sampled_from((0, 100)), fuzzing.int_values(-(2**63), 2**63 - 1, (0, 1, 10_000_000, 10_000_001))
    ),
}


def deployment_fields(prefix: str) -> dict[str, Field]:
    """The fields of a Deployment a caller sets (output-only ones are filled from the descriptor)."""
    fields = {
        "primary.alias": ALIAS,
        "primary.version": VERSION,
        "canary.target.alias": ALIAS,
        "canary.target.version": VERSION,
        "canary.percent": PERCENT,
        "shadow.target.alias": ALIAS,
        "shadow.target.version": VERSION,
        "shadow.percent": PERCENT,
        "sample_rate": SAMPLE_RATE,
        **{f"batching.{name}": value for name, value in BATCHING.items()},
    }
    return {f"{prefix}.{path}": value for path, value in fields.items()}


UPDATE_MASK = Field(
    st.one_of(
        st.sampled_from((["sample_rate"], ["canary.percent"], [], ["shadow"], ["canary"])),
        st.lists(st.sampled_from(SEED_PATHS), unique=True, max_size=2),
    ),
    st.lists(
        st.one_of(
            st.sampled_from(
                ("model", "name", "etag", "state", "", "*", "canary.target", "primary.alias", "sample_rate ")
            ),
            fuzzing.nasty_text(),
        ),
        min_size=1,
        max_size=3,
    ),
)
ETAG = Field(st.sampled_from(("", "", "stale")), fuzzing.nasty_text())
PAGE_TOKEN = Field(
    st.just(""),
    fuzzing.page_tokens(({}, {"after": "iris"}), ("after", "offset", "id")),
)

# ---- data plane

INFER_MODEL = Field(st.sampled_from((DEPLOYMENT, DEPLOYMENT, DOOMED, "nope")), ids((DEPLOYMENT, DOOMED)))
INFER_VERSION = Field(
    st.sampled_from(("", "1", "2", "production", "")), fuzzing.version_segments(("1", "2", "production", "staging"))
)
parameter_values = messages(
    service_pb2.InferParameter,
    {
        "int64_param": Field(st.sampled_from((0, 1, 3)), fuzzing.int_values(-(2**63), 2**63 - 1, (-1, 0, 2**62))),
        "string_param": Field(st.sampled_from(("", "x")), fuzzing.nasty_text()),
    },
)
# Keys Triton acts on (request, input and output parameters), then anything.
PARAMETER_KEYS = (
    "classification",
    "binary_data",
    "binary_data_size",
    "binary_data_output",
    "shared_memory_region",
    "shared_memory_offset",
    "shared_memory_byte_size",
    "priority",
    "timeout",
    "sequence_id",
    "sequence_start",
    "sequence_end",
    "triton_enable_empty_final_response",
)
PARAMETERS = Field(
    st.just({}),
    st.dictionaries(st.one_of(st.sampled_from(PARAMETER_KEYS), fuzzing.nasty_text()), parameter_values, max_size=3),
)
input_tensors = messages(
    service_pb2.ModelInferRequest.InferInputTensor,
    {
        "parameters": PARAMETERS,
        "name": Field(st.sampled_from(("x", "color")), fuzzing.nasty_text()),
        "datatype": Field(
            st.sampled_from(("FP32", "BYTES")),
            st.one_of(st.sampled_from((*DATATYPES, "fp32", "FP32 ", "STRING", "")), fuzzing.nasty_text()),
        ),
        "shape": Field(
            st.lists(st.sampled_from((1, 2, -1, 0)), min_size=2, max_size=2),
            st.lists(fuzzing.int_values(-(2**63), 2**63 - 1, (-1, 0, 1, 3, 2**31, 2**32 + 1)), max_size=5),
        ),
    },
)
INPUTS = Field(
    st.just(SANE_INPUTS),
    st.one_of(
        st.lists(input_tensors, max_size=4),
        st.builds(lambda tensor: [*SANE_INPUTS, tensor], input_tensors),
        st.builds(lambda n: [SANE_INPUTS[0]] * n, st.sampled_from((2, 100))),
    ),
)
RAW = Field(
    st.one_of(st.just(SANE_RAW), st.just([])),
    st.one_of(
        st.lists(st.binary(max_size=64), max_size=4),
        st.builds(lambda blob: [SANE_RAW[0], blob], fuzzing.mutated_bytes([SANE_RAW[1]])),
        st.builds(lambda blob: [blob, SANE_RAW[1]], fuzzing.mutated_bytes([SANE_RAW[0]])),
        st.sampled_from((MAX_REQUEST_BYTES - 64, MAX_REQUEST_BYTES + 1)).map(lambda n: [b"\x00" * n, SANE_RAW[1]]),
    ),
)
sane_infer_requests = st.builds(
    valid_infer,
    st.sampled_from(("", "1", "2", "production")),
    st.sampled_from((1, 0, 3, 64)),
    st.booleans(),
)
OUTPUTS = Field(
    st.one_of(
        st.just([]),
        st.just([service_pb2.ModelInferRequest.InferRequestedOutputTensor(name="label")]),
    ),
    st.lists(
        messages(
            service_pb2.ModelInferRequest.InferRequestedOutputTensor,
            {
                "name": Field(st.sampled_from(("label", "probabilities")), fuzzing.nasty_text()),
                "parameters": PARAMETERS,
            },
        ),
        max_size=3,
    ),
)
MODEL_REF = {"name": INFER_MODEL, "version": INFER_VERSION}

REQUESTS: dict[str, st.SearchStrategy[Any]] = {
    # ---- control plane
    "CreateDeployment": messages(
        pb.CreateDeploymentRequest,
        {"deployment_id": CREATE_ID, "deployment.model": MODEL, **deployment_fields("deployment")},
    ),
    "GetDeployment": messages(pb.GetDeploymentRequest, {"name": DEPLOYMENT_NAME}),
    "ListDeployments": messages(
        pb.ListDeploymentsRequest,
        {"page_size": Field(st.integers(0, 2), fuzzing.page_sizes()), "page_token": PAGE_TOKEN},
    ),
    "UpdateDeployment": messages(
        pb.UpdateDeploymentRequest,
        {
            "deployment.name": DEPLOYMENT_NAME,
            "deployment.etag": ETAG,
            "deployment.model": Field(st.sampled_from(("", "models/iris")), MODEL.nasty),
            "update_mask.paths": UPDATE_MASK,
            **deployment_fields("deployment"),
        },
    ),
    "DeleteDeployment": messages(pb.DeleteDeploymentRequest, {"name": DOOMED_NAME}),
    # ---- data plane
    "ModelInfer": st.one_of(
        sane_infer_requests,
        messages(
            service_pb2.ModelInferRequest,
            {
                "model_name": INFER_MODEL,
                "model_version": INFER_VERSION,
                "id": Field(st.sampled_from(("", "req-1")), fuzzing.nasty_text()),
                "inputs": INPUTS,
                "raw_input_contents": RAW,
                "outputs": OUTPUTS,
                "parameters": PARAMETERS,
            },
        ),
    ),
    "ModelStreamInfer": st.lists(
        messages(service_pb2.ModelInferRequest, {"model_name": INFER_MODEL}), min_size=1, max_size=2
    ).map(tuple),
    "ModelMetadata": messages(service_pb2.ModelMetadataRequest, MODEL_REF),
    "ModelConfig": messages(service_pb2.ModelConfigRequest, MODEL_REF),
    "ModelReady": messages(service_pb2.ModelReadyRequest, MODEL_REF),
    "ModelStatistics": messages(
        service_pb2.ModelStatisticsRequest,
        {"name": Field(st.sampled_from(("", DEPLOYMENT, DOOMED)), INFER_MODEL.nasty), "version": INFER_VERSION},
    ),
    "ServerMetadata": messages(service_pb2.ServerMetadataRequest),
    "ServerLive": messages(service_pb2.ServerLiveRequest),
    "ServerReady": messages(service_pb2.ServerReadyRequest),
    **{
        name: messages(
            GetMessageClass(METHODS[name].input_type),
            {"name": Field(st.sampled_from((DEPLOYMENT, "iris.1")), fuzzing.nasty_text())}
            if "name" in METHODS[name].input_type.fields_by_name
            else {},
        )
        for name in sorted(UNSERVED - {"ModelStreamInfer"})
    },
}
CALLS, SWEEP_EXTRA = fuzzing.call_tables(REQUESTS, {"ListDeployments": ({}, "after")})

# ------------------------------------------------------------------ response checks

NAMES = {
    "ferry.serve.v1.Deployment.name": "deployments/{deployment}",
    "ferry.serve.v1.Deployment.model": "models/{model}",
    "ferry.serve.v1.TrafficTarget.alias": "{alias}",
}


def _created_name(request: pb.CreateDeploymentRequest) -> str:
    return f"deployments/{request.deployment_id or request.deployment.model.split('/', 1)[-1]}"


def _infer_pairs(q: service_pb2.ModelInferRequest, r: tuple[Any, ...]) -> list[tuple[str, str]]:
    pairs = [(q.model_name, r[0].model_name)]
    if q.model_version.isascii() and q.model_version.isdigit():
        pairs.append((q.model_version, r[0].model_version))
    else:
        pairs.append(("latest", r[0].model_version))  # `latest` matches any number
    return pairs


Pairs = Callable[[Any, tuple[Any, ...]], list[tuple[str, str]]]
SAME_RESOURCE: dict[str, Pairs] = {
    "CreateDeployment": lambda q, r: [(_created_name(q), r[0].name), (q.deployment.model, r[0].model)],
    "GetDeployment": lambda q, r: [(q.name, r[0].name)],
    "UpdateDeployment": lambda q, r: [(q.deployment.name, r[0].name)],
    "ModelInfer": _infer_pairs,
    "ModelMetadata": lambda q, r: [(q.name, r[0].name)],
    "ModelConfig": lambda q, r: [(q.name, r[0].config.name)],
    "ModelStatistics": lambda q, r: [(q.name, s.name) for s in r[0].model_stats if q.name],
}


class WrongUnimplemented(AssertionError):
    """An RPC serve does not serve answered something else than UNIMPLEMENTED, or a served one did."""


class ModelsLeftBehind(AssertionError):
    """After a change settled, Triton's repository holds other versions than the deployments route to."""


class TritonStopped(AssertionError):
    """After a call, a valid ModelInfer on the seeded deployment no longer succeeds."""


# --------------------------------------------------------------------------- server


class FuzzedServe(fuzzing.FuzzedService):
    """Serve seeded for fuzzing (on a registry seeded for it), and the property every call must satisfy."""

    stub_class = serve_pb2_grpc.ServeServiceStub

    def __init__(self, server: fuzzing.ServerProcess, repository: pathlib.Path) -> None:
        self.unsettled = ""
        super().__init__(server, repository, self._read)

    def connect(self) -> None:
        super().connect()
        self.infer = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)

    def probe(self) -> None:
        self.stub.GetDeployment(pb.GetDeploymentRequest(name=f"deployments/{DEPLOYMENT}"), timeout=10)

    def triton_answers(self, timeout: float = 0.0) -> str:
        """``""`` when a valid ModelInfer on ``iris`` succeeds (within ``timeout`` s), else why not."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.infer.ModelInfer(valid_infer(), timeout=30)
                return ""
            except grpc.RpcError as error:
                problem = f"{error.code().name} {error.details()!r}"
            if time.monotonic() >= deadline:
                return problem
            time.sleep(0.5)

    def _get(self, deployment_id: str) -> pb.Deployment | None:
        try:
            found: pb.Deployment = self.stub.GetDeployment(
                pb.GetDeploymentRequest(name=f"deployments/{deployment_id}"), timeout=30
            )
        except grpc.RpcError as error:
            assert error.code() is grpc.StatusCode.NOT_FOUND, error
            return None
        return found

    def seed(self) -> None:
        """``iris`` as :data:`SEED` (READY, both versions served) and ``doomed`` (FAILED)."""
        current = self._get(DEPLOYMENT)
        if current is None:
            made = self.stub.CreateDeployment(
                pb.CreateDeploymentRequest(deployment_id=DEPLOYMENT, deployment=SEED), timeout=120
            )
            assert made.state == pb.Deployment.STATE_READY, made
        elif not _same_spec(current, SEED) or current.state != pb.Deployment.STATE_READY:
            self.restore()
        if self._get(DOOMED) is None:
            doomed = pb.Deployment(model="models/broken")
            made = self.stub.CreateDeployment(pb.CreateDeploymentRequest(deployment_id=DOOMED, deployment=doomed))
            assert made.state == pb.Deployment.STATE_FAILED, made
        for deployment in self.listing("ListDeployments", pb.ListDeploymentsRequest(page_size=1000), "deployments"):
            name = pb.Deployment.FromString(deployment).name
            if name not in (f"deployments/{DEPLOYMENT}", f"deployments/{DOOMED}"):
                self.stub.DeleteDeployment(pb.DeleteDeploymentRequest(name=name), timeout=60)
        leftovers = self.settle()
        assert not leftovers, f"seeded, yet {leftovers}"
        self.dirty = False

    def restore(self) -> None:
        """Update ``iris`` back to :data:`SEED`."""
        request = pb.UpdateDeploymentRequest(deployment=SEED, update_mask=field_mask_pb2.FieldMask(paths=SEED_PATHS))
        restored = self.stub.UpdateDeployment(request, timeout=120)
        assert restored.state == pb.Deployment.STATE_READY, restored

    def routed(self) -> list[str]:
        """The Triton models the deployments route to, as the repository should hold them."""
        names = []
        for item in self.listing("ListDeployments", pb.ListDeploymentsRequest(page_size=1000), "deployments"):
            if not isinstance(item, bytes):
                continue
            deployment = pb.Deployment.FromString(item)
            batching = deployment.batching
            suffix = f".b{batching.max_batch_size}-{batching.max_queue_delay_microseconds}" if batching.enabled else ""
            deployment_id = deployment.name.split("/", 1)[-1]
            names += [f"{deployment_id}.{served.version}{suffix}" for served in deployment.served_versions]
        return sorted(set(names))

    def settle(self, timeout: float = 30.0) -> str:
        """Wait until the repository holds exactly the routed versions (retired ones unloaded);
        ``""``, or what is left over or missing after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            routed, present = self.routed(), self._repository()
            if routed == present:
                return ""
            if time.monotonic() >= deadline:
                return f"routed {routed}, in the repository {present}"
            time.sleep(0.2)

    def _repository(self) -> list[str]:
        return sorted(path.name for path in self.objects.iterdir()) if self.objects.exists() else []

    def _read(self, part: str) -> Any:
        if part == "deployments":
            return self.listing("ListDeployments", pb.ListDeploymentsRequest(page_size=1000), "deployments")
        return self._repository()

    def undo(self, call: Call, responses: tuple[Any, ...], before: dict[str, Any]) -> None:
        """Delete a deployment a Create made; update ``iris`` back to its seed after an Update."""
        known = {pb.Deployment.FromString(item).name for item in before["deployments"] if isinstance(item, bytes)}
        try:
            if call.rpc == "CreateDeployment" and responses[0].name not in known:
                self.stub.DeleteDeployment(pb.DeleteDeploymentRequest(name=responses[0].name), timeout=60)
            elif call.rpc == "UpdateDeployment" and responses[0].name == SEED.name:
                self.restore()
        except (grpc.RpcError, AssertionError):
            self.dirty = True  # the next seed() puts the targets back
        self.unsettled = self.settle()

    def _call(self, call: Call) -> fuzzing.Outcome:
        method = METHODS[call.rpc]
        stub = self.stub if call.rpc in SERVE.methods_by_name else self.infer
        return fuzzing.call_rpc(stub, method, call.request, timeout=120 if call.rpc in MUTATING else 60)

    def check(self, call: Call) -> None:
        """The property: live planes, a sane status and response, no trace of a failed change."""
        if self.dirty:
            self.seed()
            self.visible.forget()
        mutating = call.rpc in MUTATING
        before = self.visible.take(["deployments", "model repository"] if mutating else [])
        mark = self.server.log_mark()
        outcome = self._call(call)
        self.unsettled = ""
        try:
            self.check_alive(outcome)
            problem = self.triton_answers()
            if problem:
                # Triton died or lost the model: give its supervisor time to bring it back.
                recovered = not self.triton_answers(timeout=90)
                self.dirty = True
                raise TritonStopped(f"after {outcome}: a valid ModelInfer got {problem} (recovered: {recovered})")
            if call.rpc in UNSERVED:
                if outcome.code is not grpc.StatusCode.UNIMPLEMENTED:
                    raise WrongUnimplemented(f"{outcome}: not served, so UNIMPLEMENTED")
                return
            if outcome.code is grpc.StatusCode.UNIMPLEMENTED:
                raise WrongUnimplemented(f"{outcome}: served, yet UNIMPLEMENTED")
            fuzzing.check_outcome(outcome, server_errors=lambda: self.server.errors_since(mark))
            if outcome.code is grpc.StatusCode.OK:
                fuzzing.check_names(outcome, NAMES)
                if call.rpc in SAME_RESOURCE:
                    fuzzing.check_same_resource(outcome, SAME_RESOURCE[call.rpc](call.request, outcome.responses))
            elif mutating:
                self.visible.check_unchanged(before, outcome)
        finally:
            if mutating and outcome.code is grpc.StatusCode.OK:
                self.undo(call, outcome.responses, before)
                self.visible.forget()
                self.dirty = self.dirty or call.rpc == "DeleteDeployment"
        if self.unsettled:
            self.dirty = True
            raise ModelsLeftBehind(f"after {outcome} and its undo: {self.unsettled}")


def _same_spec(deployment: pb.Deployment, seed: pb.Deployment) -> bool:
    fields = ("model", "primary", "canary", "shadow", "sample_rate")
    same = all(getattr(deployment, name) == getattr(seed, name) for name in fields)
    return same and not deployment.batching.enabled


def _seed_registry(address: str) -> None:
    with RegistryClient(address) as registry:
        for model in MODELS:
            registry.create_model(model)
        for bias in (0.0, 5.0):
            registry.upload_model_version("iris", tiny_classifier(bias), format="onnx", signature=SIGNATURE)
        registry.set_alias("models/iris/aliases/production", 1)
        # Not ONNX: serve refuses to load it, so a deployment of it is FAILED at once.
        registry.upload_model_version("broken", b"not a model", format="torchscript", signature=SIGNATURE)
        registry.set_alias("models/broken/aliases/production", 1)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzedServe]:
    """``ferry-registry`` and ``ferry-serve`` (embedded Triton) in processes of their own."""
    root = tmp_path_factory.mktemp("serve-fuzz")
    quiet = {"FERRY_LOG_LEVEL": "warning", "FERRY_LOG_FORMAT": "json", "OTEL_TRACES_EXPORTER": "none"}
    registry: ServiceProcess = spawn_and_wait(
        "registry",
        env={**quiet, "FERRY_STATE_DIR": str(root / "registry")},
        log_path=root / "registry.log",
        timeout=120,
    )
    try:
        _seed_registry(registry.address)
        env = {
            "FERRY_STATE_DIR": str(root / "serve"),
            "FERRY_LOG_LEVEL": "warning",
            "FERRY_REGISTRY_ADDRESS": registry.address,
            # Nothing listens there: samples are dropped and counted, never block a request.
            "FERRY_MONITOR_ADDRESS": closed_address(),
            "FERRY_SERVE_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
            "FERRY_SERVE_POLL_MS": "200",
            "FERRY_SERVE_DRAIN_SECONDS": "5",
        }
        server = fuzzing.ServerProcess("ferry_serve", "serve", env, root / "serve.log")
        server.start(timeout=180)
        try:
            fuzzed = FuzzedServe(server, root / "serve" / "triton" / "models")
            fuzzed.seed()
            yield fuzzed
            fuzzed.close()
        finally:
            server.stop()
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def fuzzed(serve: FuzzedServe) -> FuzzedServe:
    return serve


# The tests every fuzzed service runs (ferry_common.fuzzing.rpc_tests), then this service's own.
globals().update(fuzzing.rpc_tests(CALLS, METHODS, SWEEP_EXTRA))

# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("rows", [0, 1, 3])
@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize("version", ["", "1", "2", "production"])
def test_valid_requests_are_answered(serve: FuzzedServe, version: str, raw: bool, rows: int) -> None:
    """The sane end of the ModelInfer strategy does succeed (else the fuzzing aims at nothing)."""
    response = serve.infer.ModelInfer(valid_infer(version, rows, raw), timeout=30)
    assert response.model_name == DEPLOYMENT
    assert response.model_version == {"": "1", "production": "1"}.get(version, version)


def _request(inputs: list[Any], raw: list[bytes], **fields: Any) -> service_pb2.ModelInferRequest:
    return service_pb2.ModelInferRequest(model_name=DEPLOYMENT, inputs=inputs, raw_input_contents=raw, **fields)


def _tensor(name: str, datatype: str, shape: list[int], **contents: Any) -> Any:
    tensor = service_pb2.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    return tensor


def _parameter(**value: Any) -> service_pb2.InferParameter:
    return service_pb2.InferParameter(**value)


X1 = np.array([[0.5]], dtype=np.float32).tobytes()
COLOR1 = serialize_byte_tensor(np.array([[b"red"]], dtype=np.object_)).item()


def _classic_bad_infers() -> dict[str, service_pb2.ModelInferRequest]:
    x, color = "x", "color"
    raw_shape = {
        "raw BYTES: length prefix past the end": [X1, b"\x64\x00\x00\x00red"],
        "raw BYTES: truncated length prefix": [X1, b"\x03\x00"],
        "raw BYTES: two elements for one": [X1, COLOR1 + COLOR1],
        "raw BYTES: no element for one": [X1, b""],
        "raw BYTES: not UTF-8": [X1, b"\x01\x00\x00\x00\xff"],
        "raw BYTES: a NUL inside": [X1, b"\x03\x00\x00\x00r\x00d"],
    }
    cases = {
        label: _request([_tensor(x, "FP32", [1, 1]), _tensor(color, "BYTES", [1, 1])], raw)
        for label, raw in raw_shape.items()
    }
    typed = {
        "typed: two values for one": [
            _tensor(x, "FP32", [1, 1], fp32_contents=[1.0, 2.0]),
            _tensor(color, "BYTES", [1, 1], bytes_contents=[b"red"]),
        ],
        "typed: no values": [_tensor(x, "FP32", [1, 1]), _tensor(color, "BYTES", [1, 1])],
        "typed: wrong contents field": [
            _tensor(x, "FP32", [1, 1], int64_contents=[1]),
            _tensor(color, "BYTES", [1, 1], bytes_contents=[b"red"]),
        ],
        "typed: not UTF-8": [
            _tensor(x, "FP32", [1, 1], fp32_contents=[1.0]),
            _tensor(color, "BYTES", [1, 1], bytes_contents=[b"\xff\xfe"]),
        ],
        "typed: 2**62 rows, one value": [
            _tensor(x, "FP32", [2**62, 1], fp32_contents=[1.0]),
            _tensor(color, "BYTES", [2**62, 1], bytes_contents=[b"red"]),
        ],
        "typed: 2**31 rows": [
            _tensor(x, "FP32", [2**31, 1], fp32_contents=[1.0]),
            _tensor(color, "BYTES", [2**31, 1], bytes_contents=[b"red"]),
        ],
        "typed: rows differ between inputs": [
            _tensor(x, "FP32", [2, 1], fp32_contents=[1.0, 2.0]),
            _tensor(color, "BYTES", [1, 1], bytes_contents=[b"red"]),
        ],
        "typed: raw and typed contents": [
            _tensor(x, "FP32", [1, 1], fp32_contents=[1.0]),
            _tensor(color, "BYTES", [1, 1], bytes_contents=[b"red"]),
        ],
    }
    for label, inputs in typed.items():
        raw = [X1, COLOR1] if "raw and typed" in label else []
        cases[label] = _request(inputs, raw)
    sane_inputs, sane_raw = _tensors(1, True)
    cases["raw: rows differ between inputs"] = _request(
        [_tensor(x, "FP32", [2, 1]), _tensor(color, "BYTES", [1, 1])], [X1 * 2, COLOR1]
    )
    cases["raw: 2**40 x 2**40 FP32"] = _request(
        [_tensor(x, "FP32", [2**40, 2**40]), _tensor(color, "BYTES", [1, 1])], [X1, COLOR1]
    )
    cases["raw: 2**31 BYTES rows"] = _request(
        [_tensor(x, "FP32", [1, 1]), _tensor(color, "BYTES", [2**31, 1])], [X1, COLOR1]
    )
    parameters = {
        "parameter: priority -1": {"priority": _parameter(int64_param=-1)},
        "parameter: timeout 2**63-1": {"timeout": _parameter(int64_param=2**63 - 1)},
        "parameter: sequence_id": {
            "sequence_id": _parameter(int64_param=7),
            "sequence_start": _parameter(bool_param=True),
        },
        "parameter: binary_data_output": {"binary_data_output": _parameter(bool_param=True)},
        "parameter: unknown string": {"whatever": _parameter(string_param="x" * 70_000)},
        "parameter: double": {"priority": _parameter(double_param=1.5)},
        "parameter: uint64": {"timeout": _parameter(uint64_param=2**64 - 1)},
    }
    for label, values in parameters.items():
        cases[label] = _request(sane_inputs, sane_raw, parameters=values)
    input_parameters = {
        "input parameter: shared_memory_region": {"shared_memory_region": _parameter(string_param="nope")},
        "input parameter: shared_memory_byte_size": {
            "shared_memory_region": _parameter(string_param="nope"),
            "shared_memory_byte_size": _parameter(int64_param=2**62),
        },
        "input parameter: binary_data_size": {"binary_data_size": _parameter(int64_param=2**40)},
    }
    for label, values in input_parameters.items():
        inputs = [_tensor(x, "FP32", [1, 1]), _tensor(color, "BYTES", [1, 1])]
        for key, value in values.items():
            inputs[0].parameters[key].CopyFrom(value)
        cases[label] = _request(inputs, [X1, COLOR1])
    echoed = "\u00e9" * 8_000
    cases["echo: 16 KB parameter key"] = _request(sane_inputs, sane_raw, parameters={echoed: _parameter()})
    cases["echo: 16 KB request id"] = _request(
        [_tensor(x, "FP32", [1, 1]), _tensor(color, "BYTES", [1, 1])], [X1, b""], id=echoed
    )
    output = service_pb2.ModelInferRequest.InferRequestedOutputTensor
    outputs = {
        "output: classification 3 of label": [
            output(name="label", parameters={"classification": _parameter(int64_param=3)})
        ],
        "output: classification 2**62": [
            output(name="probabilities", parameters={"classification": _parameter(int64_param=2**62)})
        ],
        "output: classification -1": [
            output(name="probabilities", parameters={"classification": _parameter(int64_param=-1)})
        ],
        "output: shared_memory_region": [
            output(name="label", parameters={"shared_memory_region": _parameter(string_param="nope")})
        ],
        "output: twice": [output(name="label"), output(name="label")],
        "echo: 16 KB output name": [output(name=echoed)],
        "echo: 16 KB output parameter key": [output(name="label", parameters={echoed: _parameter(int64_param=1)})],
    }
    for label, requested in outputs.items():
        cases[label] = _request(sane_inputs, sane_raw, outputs=requested)
    return cases


CLASSIC_INFERS = _classic_bad_infers()


def test_classic_bad_tensors_get_a_clean_status(serve: FuzzedServe) -> None:
    """Tensors whose contents disagree with their shape, bad BYTES encodings, odd parameters."""
    calls = ((label, Call("ModelInfer", request)) for label, request in CLASSIC_INFERS.items())
    fuzzing.assert_all_clean(serve, calls)


@pytest.mark.parametrize(
    ("label", "field"),
    [
        ("output: classification 3 of label", "outputs[0].parameters"),
        ("output: shared_memory_region", "outputs[0].parameters"),
        ("input parameter: shared_memory_region", "inputs[0].parameters"),
        ("input parameter: shared_memory_byte_size", "inputs[0].parameters"),
        ("echo: 16 KB parameter key", "parameters"),
        ("echo: 16 KB request id", "id"),
        ("echo: 16 KB output name", "outputs[0].name"),
        ("echo: 16 KB output parameter key", "outputs[0].parameters"),
    ],
)
def test_what_triton_cannot_take_is_refused_before_it(serve: FuzzedServe, label: str, field: str) -> None:
    """Classifying a BYTES output killed Triton (SIGFPE); a shared-memory region answered
    UNAVAILABLE "the version is being swapped"; Triton quoted 16 KB keys, ids and names whole
    (past a client's trailers): all the caller's mistakes, said as such and short."""
    with pytest.raises(grpc.RpcError) as raised:
        serve.infer.ModelInfer(CLASSIC_INFERS[label], timeout=30)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT, raised.value
    assert raised.value.details().startswith(f"{field}: "), raised.value.details()
    assert not serve.triton_answers(), "Triton still answers"


LONG_VERSIONS = {
    "8193 zeros": "0" * 8193,
    "5000 nines": "9" * 5000,
    "1 then 30 zeros": "1" + "0" * 30,
    "2**64": str(2**64),
}


def test_long_version_numbers_are_not_served(serve: FuzzedServe) -> None:
    """A version of thousands of digits once raised ValueError (int() refuses them): INTERNAL."""
    requests: dict[str, Callable[[str], Any]] = {
        "ModelInfer": lambda version: valid_infer(version),
        "ModelReady": lambda version: service_pb2.ModelReadyRequest(name=DEPLOYMENT, version=version),
        "ModelMetadata": lambda version: service_pb2.ModelMetadataRequest(name=DEPLOYMENT, version=version),
        "ModelConfig": lambda version: service_pb2.ModelConfigRequest(name=DEPLOYMENT, version=version),
        "ModelStatistics": lambda version: service_pb2.ModelStatisticsRequest(name=DEPLOYMENT, version=version),
    }
    calls = [
        (f"{rpc} {label}", Call(rpc, build(version)))
        for rpc, build in requests.items()
        for label, version in LONG_VERSIONS.items()
    ]
    fuzzing.assert_all_clean(serve, calls)
    for label, call in calls:
        outcome = serve._call(call)
        if call.rpc == "ModelReady":
            assert outcome.code is grpc.StatusCode.OK and not outcome.responses[0].ready, label
        else:
            assert outcome.code is grpc.StatusCode.NOT_FOUND, (label, str(outcome))
            assert outcome.details.startswith("model_version: "), (label, str(outcome))
