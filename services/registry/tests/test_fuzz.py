"""Property-based fuzzing of every RegistryService RPC through a real server.

One ``ferry-registry`` process per module (its real ``main()``: the ``grpc.aio`` server
with the real interceptors, on a free port, a SQLite file, the local object store),
restarted when a call crashes it, and talked to through the generated stubs. It is
seeded with models, versions and aliases so that fuzzed requests reach past
validation; the Delete RPCs aim at a model of their own (``doomed``), made anew when a
delete took part of it. Two tests per RPC:

- ``test_malformed_requests_get_a_clean_status``: hypothesis builds requests from the
  message descriptor (see :mod:`ferry_common.fuzzing`): all sane, sane but for one bad
  field, or anything, with targeted values for names, ids, versions, page tokens,
  labels, filters and artifacts; UploadModelVersion gets its messages in every order;
- ``test_every_field_with_classic_bad_values``: a sane request with each field in turn
  (nested ones included) set to a trailing newline, 80 KB, one non-ASCII character,
  ``٣`` or 10**30 for a number, integer limits, an unknown enum number, NaN, bad map
  keys, page tokens holding what the service never issues.

Whatever the request:

- the status is never INTERNAL or UNKNOWN, and the call does not hang;
- the status message fits in the client's trailing metadata (no echoed 70 KB id);
- a success names resources canonically (no ``models/churn\n``) and answers about the
  resource asked for (``versions/٣`` is not ``versions/3``);
- the server still answers afterwards (health check and a GetModel), and is still running;
- a mutating call that fails leaves no trace: models, versions, aliases, the audit
  log and the object store are exactly as before. (What succeeds is undone where it
  can be, so that the shrinker's replays meet the same state.)

Budgets (examples per RPC):

- ``pytest services/registry/tests/test_fuzz.py``: 30, derandomized (part of
  ``make test``); ``FERRY_FUZZ_EXAMPLES=200`` raises it.
- ``pytest -m fuzz services/registry/tests/test_fuzz.py``: the big budget, 1000 per
  RPC with a fresh random seed each run (``FERRY_FUZZ_EXAMPLES`` sets it; ``FERRY_FUZZ=1``
  runs it alongside the rest without ``-m fuzz``). A failure prints the falsifying
  request and a ``@reproduce_failure`` blob; ``.hypothesis/`` replays it next run.
"""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from hypothesis import strategies as st

from ferry.registry.v1 import registry_pb2 as pb
from ferry.registry.v1 import registry_pb2_grpc
from ferry_common import fuzzing
from ferry_common.fuzzing import OMIT, Call, ids, messages, resource_names

pytestmark = pytest.mark.xdist_group("fuzz-registry")

SERVICE = pb.DESCRIPTOR.services_by_name["RegistryService"]
MODELS = ("churn", "fraud", "empty")
ALIASES = ("production", "staging", "canary")
VERSIONS = ("1", "2", "3", "4", "latest")
# Read by the liveness probe; no strategy draws it, so no fuzzed call deletes it.
SENTINEL = "fuzz-sentinel-model"
# What the Delete RPCs aim at (and nothing else does), so that the other targets stay put.
DOOMED = "doomed"
SHA = "ab" * 32
ARTIFACT = b"\x08\x07fuzz onnx bytes\x00" * 16
MAX_ARTIFACT_BYTES = 64 * 1024
MUTATING = {
    "CreateModel",
    "UpdateModel",
    "DeleteModel",
    "CreateModelVersion",
    "UploadModelVersion",
    "UpdateModelVersion",
    "DeleteModelVersion",
    "SetAlias",
    "DeleteAlias",
    "RollbackAlias",
    "BatchSetAliases",
}
DESTRUCTIVE = {"DeleteModel", "DeleteModelVersion", "DeleteAlias"}
# The registry's object store root as a URI, known once the server runs (for artifact URIs).
STORE: dict[str, str] = {"uri": "file:///nonexistent/objects/"}


# ------------------------------------------------------------------------ strategies
# Each field has sane values (that reach the service's logic: existing models, valid
# ids, labels, artifacts) and nasty ones; fuzzing.messages() mixes whole-sane requests,
# requests with one bad field, and anything.

Field = fuzzing.Field
sane_models = st.one_of(st.sampled_from(MODELS), st.sampled_from(MODELS), fuzzing.valid_ids())
sane_versions = st.sampled_from(VERSIONS)
sane_aliases = st.one_of(st.sampled_from(ALIASES), fuzzing.valid_ids())
MODEL_ID = Field(sane_models, ids(MODELS))
MODEL_NAME = Field(
    fuzzing.well_formed_names("models/{model}", model=sane_models), resource_names("models/{model}", model=ids(MODELS))
)
VERSION_NAME = Field(
    fuzzing.well_formed_names("models/{model}/versions/{version}", model=sane_models, version=sane_versions),
    resource_names("models/{model}/versions/{version}", model=ids(MODELS), version=fuzzing.version_segments(VERSIONS)),
)
ALIAS_NAME = Field(
    fuzzing.well_formed_names("models/{model}/aliases/{alias}", model=sane_models, alias=sane_aliases),
    resource_names("models/{model}/aliases/{alias}", model=ids(MODELS), alias=ids(ALIASES)),
)
doomed = ids((DOOMED,))
DOOMED_MODEL = Field(
    st.sampled_from((f"models/{DOOMED}", "models/fresh-one")), resource_names("models/{model}", model=doomed)
)
DOOMED_VERSION = Field(
    fuzzing.well_formed_names(
        "models/{model}/versions/{version}", model=st.just(DOOMED), version=st.sampled_from(("1", "2", "3"))
    ),
    resource_names("models/{model}/versions/{version}", model=doomed, version=fuzzing.version_segments(("1", "2"))),
)
DOOMED_ALIAS = Field(
    fuzzing.well_formed_names(
        "models/{model}/aliases/{alias}",
        model=st.just(DOOMED),
        alias=st.sampled_from(("production", "staging", "canary")),
    ),
    resource_names("models/{model}/aliases/{alias}", model=doomed, alias=ids(ALIASES)),
)
VERSION_NUMBER = Field(st.integers(1, 5), fuzzing.int_values(-(2**63), 2**63 - 1, (1, 2, 3, 4)))
EXPECTED_VERSION = Field(st.one_of(st.just(OMIT), st.integers(0, 5)), st.one_of(st.just(OMIT), VERSION_NUMBER.nasty))
DESCRIPTION = Field(
    st.text(max_size=20), st.one_of(fuzzing.huge_text((9_999, 10_000, 10_001, 70_000)), fuzzing.nasty_text())
)
REASON = Field(st.text(max_size=20), st.one_of(fuzzing.huge_text((2_000, 2_001, 70_000)), fuzzing.nasty_text()))
LABELS = Field(
    st.dictionaries(
        st.sampled_from(("team", "tier", "a.b", "x_y-z")), st.sampled_from(("risk", "gold", "", "1")), max_size=3
    ),
    fuzzing.label_maps(),
)
REQUEST_ID = Field(
    st.sampled_from(("", "req-1", "req-2")),
    st.one_of(st.from_regex(r"[A-Za-z0-9_.:-]{127,130}", fullmatch=True), fuzzing.nasty_text()),
)
FILTER = Field(
    st.sampled_from(("", "labels.team=risk", 'labels.team="risk" AND labels.tier=gold')),
    st.one_of(
        st.sampled_from(
            (
                "labels.team=",
                "labels.=x",
                "labels.team=risk AND",
                "labels.team=risk\n",
                "team=risk",
                "labels.team=a AND labels.team=b",
                "labels.t\u00e9am=x",
                'labels.team="a"b"',
            )
        ),
        st.lists(st.tuples(fuzzing.nasty_text(), fuzzing.nasty_text()), min_size=1, max_size=3).map(
            lambda terms: " AND ".join(f"labels.{key}={value}" for key, value in terms)
        ),
        fuzzing.nasty_text(),
    ),
)
PAGE_SIZE = Field(st.integers(0, 3), fuzzing.page_sizes())
METRICS = Field(
    st.dictionaries(st.sampled_from(("auc", "accuracy")), st.floats(0, 1), max_size=2),
    st.dictionaries(
        st.one_of(st.sampled_from(("auc", "accuracy")), fuzzing.nasty_text()), fuzzing.nasty_doubles(), max_size=4
    ),
)
PARAMS = Field(
    st.dictionaries(st.sampled_from(("seed", "lr")), st.sampled_from(("1", "0.1")), max_size=2),
    st.dictionaries(fuzzing.nasty_text(), fuzzing.nasty_text(), max_size=3),
)
ARTIFACT_URI = Field(
    st.one_of(
        st.just("s3://bucket/churn.onnx"), st.builds(lambda: STORE["uri"] + "models/churn/versions/1/artifact.onnx")
    ),
    st.one_of(
        st.sampled_from(
            (
                "s3://bucket/a/../b.onnx",
                "s3://b/k\n",
                "file:///etc/passwd",
                "file:///tmp/../etc/passwd",
                "file://localhost/etc/passwd",
                "file:///%2e%2e/x",
                "https://example.com/m.onnx",
                "s3://",
                "s3:///key",
                "S3://bucket/key",
            )
        ),
        st.builds(
            lambda suffix: STORE["uri"] + suffix,
            st.sampled_from(
                (
                    "models/churn/versions/999/artifact.onnx",
                    "datasets/x/data.parquet",
                    "../registry.db",
                    "models/../../registry.db",
                    "models/%2e%2e/%2e%2e/registry.db",
                    "",
                    "models/",
                )
            ),
        ),
        fuzzing.nasty_text(),
    ),
)
SHA256 = Field(
    st.sampled_from((SHA, SHA.upper())),
    st.one_of(st.sampled_from(("", "ab" * 31, "g" * 64, SHA + "\n", " " + SHA)), fuzzing.nasty_text()),
)
SANE_TENSORS = st.lists(
    st.builds(
        pb.TensorSpec,
        name=st.sampled_from(("x", "y")),
        datatype=st.sampled_from(("FP32", "INT64", "BYTES")),
        shape=st.lists(st.sampled_from((-1, 1, 3)), max_size=3),
    ),
    max_size=2,
    unique_by=lambda spec: spec.name,
)
TENSORS = Field(
    SANE_TENSORS,
    st.lists(
        messages(
            pb.TensorSpec,
            {
                "name": Field(st.sampled_from(("x", "y")), fuzzing.nasty_text()),
                "datatype": Field(
                    st.sampled_from(("FP32", "INT64")),
                    st.one_of(st.sampled_from(("fp32", "FP32 ", "STRING", "")), fuzzing.nasty_text()),
                ),
                "shape": Field(
                    st.lists(st.sampled_from((-1, 3)), max_size=2),
                    st.lists(fuzzing.int_values(-(2**63), 2**63 - 1, (-1, -2, 0, 3)), max_size=4),
                ),
            },
        ),
        max_size=3,
    ),
)
FORMAT = Field(
    st.sampled_from((pb.ARTIFACT_FORMAT_ONNX, pb.ARTIFACT_FORMAT_TORCHSCRIPT)),
    fuzzing.enum_numbers(pb.ArtifactFormat.DESCRIPTOR),
)


def version_fields(prefix: str, *, upload: bool = False) -> dict[str, Field]:
    """Fields of a ModelVersion a caller gives (CreateModelVersion, UploadModelVersion)."""
    fields = {
        "description": DESCRIPTION,
        "labels": LABELS,
        "metrics": METRICS,
        "params": PARAMS,
        "artifact.format": FORMAT,
        "signature.inputs": TENSORS,
        "signature.outputs": TENSORS,
        "lineage.dataset_version": Field(
            st.sampled_from(("", "datasets/penguins/versions/1")),
            resource_names("datasets/{dataset}/versions/{version}", version=fuzzing.version_segments(("1", "2"))),
        ),
        "lineage.training_job": Field(
            st.sampled_from(("", "trainingJobs/job-1")), resource_names("trainingJobs/{job}")
        ),
        "lineage.split": Field(st.sampled_from(("", "train")), fuzzing.nasty_text()),
        "lineage.code_revision": Field(st.sampled_from(("", "0123abc")), fuzzing.nasty_text()),
    }
    if upload:
        fields["artifact.sha256"] = Field(st.sampled_from(("", hashlib.sha256(ARTIFACT).hexdigest())), SHA256.nasty)
        fields["artifact.size_bytes"] = Field(
            st.sampled_from((0, len(ARTIFACT))),
            fuzzing.int_values(-(2**63), 2**63 - 1, (len(ARTIFACT) + 1, MAX_ARTIFACT_BYTES + 1)),
        )
    else:
        fields["artifact.uri"] = ARTIFACT_URI
        fields["artifact.sha256"] = SHA256
        fields["artifact.size_bytes"] = Field(st.integers(0, 100), fuzzing.int_values(-(2**63), 2**63 - 1))
    return {f"{prefix}.{path}": value for path, value in fields.items()}


def update_mask(allowed: tuple[str, ...]) -> Field:
    return Field(
        st.lists(st.sampled_from(allowed), unique=True),
        st.lists(
            st.one_of(
                st.sampled_from(("name", "latest_version", "labels.team", "", "*", "description ")),
                fuzzing.nasty_text(),
            ),
            min_size=1,
            max_size=3,
        ),
    )


def upload_streams() -> st.SearchStrategy[tuple[pb.UploadModelVersionRequest, ...]]:
    header = messages(
        pb.UploadModelVersionHeader,
        {
            "parent": MODEL_NAME,
            "request_id": REQUEST_ID,
            **version_fields("model_version", upload=True),
        },
    ).map(lambda h: pb.UploadModelVersionRequest(header=h))
    contents = st.one_of(
        st.just(ARTIFACT),
        st.just(ARTIFACT),
        st.binary(max_size=256),
        st.just(b""),
        st.sampled_from((MAX_ARTIFACT_BYTES, MAX_ARTIFACT_BYTES + 1)).map(lambda size: b"\x00" * size),
    )
    body = fuzzing.chunked(contents).map(lambda parts: [pb.UploadModelVersionRequest(chunk=p) for p in parts])
    return fuzzing.client_streams(header, body, pb.UploadModelVersionRequest())


# The shape of each List RPC's page tokens (for a request on models/churn, no filter).
TOKENS: dict[str, tuple[dict[str, Any], str]] = {
    "ListModels": ({"filter": "{}"}, "after"),
    "ListModelVersions": ({"model": "churn", "filter": "{}"}, "before"),
    "ListAliases": ({"model": "churn"}, "after"),
    "ListAliasEvents": ({"model": "churn", "alias": ""}, "after"),
}


def page_token(*templates: dict[str, Any], key: str) -> Field:
    return Field(st.just(""), fuzzing.page_tokens(templates, (key,)))


SET_ALIAS = {"name": ALIAS_NAME, "version": VERSION_NUMBER, "expected_version": EXPECTED_VERSION, "reason": REASON}

REQUESTS: dict[str, st.SearchStrategy[Any]] = {
    "CreateModel": messages(
        pb.CreateModelRequest,
        {
            "model_id": MODEL_ID,
            "model.description": DESCRIPTION,
            "model.labels": LABELS,
        },
    ),
    "GetModel": messages(pb.GetModelRequest, {"name": MODEL_NAME}),
    "ListModels": messages(
        pb.ListModelsRequest,
        {
            "page_size": PAGE_SIZE,
            "page_token": page_token({"filter": "{}"}, {"filter": "{}", "after": "churn"}, key="after"),
            "filter": FILTER,
        },
    ),
    "UpdateModel": messages(
        pb.UpdateModelRequest,
        {
            "model.name": MODEL_NAME,
            "model.description": DESCRIPTION,
            "model.labels": LABELS,
            "update_mask.paths": update_mask(("description", "labels")),
        },
    ),
    "DeleteModel": messages(
        pb.DeleteModelRequest,
        {
            "name": DOOMED_MODEL,
            "force": Field(st.booleans(), st.booleans()),
        },
    ),
    "CreateModelVersion": messages(
        pb.CreateModelVersionRequest,
        {
            "parent": MODEL_NAME,
            "request_id": REQUEST_ID,
            **version_fields("model_version"),
        },
    ),
    "UploadModelVersion": upload_streams(),
    "DownloadModelVersion": messages(pb.DownloadModelVersionRequest, {"name": VERSION_NAME}),
    "GetModelVersion": messages(pb.GetModelVersionRequest, {"name": VERSION_NAME}),
    "ListModelVersions": messages(
        pb.ListModelVersionsRequest,
        {
            "parent": MODEL_NAME,
            "page_size": PAGE_SIZE,
            "page_token": page_token(
                {"model": "churn", "filter": "{}"}, {"model": "churn", "filter": "{}", "before": 3}, key="before"
            ),
            "filter": FILTER,
        },
    ),
    "UpdateModelVersion": messages(
        pb.UpdateModelVersionRequest,
        {
            "model_version.name": VERSION_NAME,
            "model_version.description": DESCRIPTION,
            "model_version.labels": LABELS,
            "model_version.metrics": METRICS,
            "update_mask.paths": update_mask(("description", "labels", "metrics")),
        },
    ),
    "DeleteModelVersion": messages(pb.DeleteModelVersionRequest, {"name": DOOMED_VERSION}),
    "SetAlias": messages(pb.SetAliasRequest, SET_ALIAS),
    "GetAlias": messages(pb.GetAliasRequest, {"name": ALIAS_NAME}),
    "ResolveAlias": messages(pb.ResolveAliasRequest, {"name": ALIAS_NAME}),
    "ListAliases": messages(
        pb.ListAliasesRequest,
        {
            "parent": MODEL_NAME,
            "page_size": PAGE_SIZE,
            "page_token": page_token({"model": "churn"}, {"model": "churn", "after": "production"}, key="after"),
        },
    ),
    "DeleteAlias": messages(
        pb.DeleteAliasRequest,
        {
            "name": DOOMED_ALIAS,
            "expected_version": EXPECTED_VERSION,
            "reason": REASON,
        },
    ),
    "RollbackAlias": messages(pb.RollbackAliasRequest, {"name": ALIAS_NAME, "reason": REASON}),
    "ListAliasEvents": messages(
        pb.ListAliasEventsRequest,
        {
            "parent": MODEL_NAME,
            "alias_id": Field(st.sampled_from(("", *ALIASES)), ids(ALIASES)),
            "page_size": PAGE_SIZE,
            "page_token": page_token(
                {"model": "churn", "alias": ""}, {"model": "churn", "alias": "production"}, key="after"
            ),
        },
    ),
    "BatchSetAliases": messages(
        pb.BatchSetAliasesRequest,
        {
            "requests": Field(
                st.lists(
                    messages(
                        pb.SetAliasRequest, {key: Field(value.sane, value.sane) for key, value in SET_ALIAS.items()}
                    ),
                    min_size=1,
                    max_size=3,
                ),
                st.one_of(
                    st.lists(messages(pb.SetAliasRequest, SET_ALIAS), max_size=4),
                    st.builds(
                        lambda request, count: [request] * count,
                        messages(pb.SetAliasRequest, SET_ALIAS),
                        st.sampled_from((2, 101)),
                    ),
                ),
            ),
            "reason": REASON,
        },
    ),
    "WatchAliases": messages(
        pb.WatchAliasesRequest,
        {
            "parent": Field(st.one_of(st.just(""), MODEL_NAME.sane), MODEL_NAME.nasty),
            "since_revision": Field(st.integers(0, 5), fuzzing.int_values(-(2**63), 2**63 - 1, (0, 1, 5, 50))),
        },
    ),
}
CALLS, SWEEP_EXTRA = fuzzing.call_tables(REQUESTS, TOKENS)

# ------------------------------------------------------------------ response checks

NAMES = {
    "ferry.registry.v1.Model.name": "models/{model}",
    "ferry.registry.v1.ModelVersion.name": "models/{model}/versions/{version}",
    "ferry.registry.v1.ModelVersion.aliases": "{alias}",
    "ferry.registry.v1.Alias.name": "models/{model}/aliases/{alias}",
    "ferry.registry.v1.Alias.model_version": "models/{model}/versions/{version}",
    "ferry.registry.v1.AliasEvent.alias": "models/{model}/aliases/{alias}",
    "ferry.registry.v1.Lineage.dataset_version": "datasets/{dataset}/versions/{version}",
    "ferry.registry.v1.Lineage.training_job": "trainingJobs/{job}",
}


Pairs = Callable[[Any, tuple[Any, ...]], list[tuple[str, str]]]
# For each RPC, the (asked, returned) resource names a success must agree on.
SAME_RESOURCE: dict[str, Pairs] = {
    "CreateModel": lambda q, r: [(f"models/{q.model_id}", r[0].name)],
    "GetModel": lambda q, r: [(q.name, r[0].name)],
    "UpdateModel": lambda q, r: [(q.model.name, r[0].name)],
    "ListModels": lambda q, r: [],
    "CreateModelVersion": lambda q, r: [(q.parent, fuzzing.parent_of(r[0].name))],
    "UploadModelVersion": lambda q, r: [(q[0].header.parent, fuzzing.parent_of(r[0].name))],
    "DownloadModelVersion": lambda q, r: [(q.name, r[0].model_version.name)],
    "GetModelVersion": lambda q, r: [(q.name, r[0].name)],
    "ListModelVersions": lambda q, r: [(q.parent, fuzzing.parent_of(v.name)) for v in r[0].model_versions],
    "UpdateModelVersion": lambda q, r: [(q.model_version.name, r[0].name)],
    "SetAlias": lambda q, r: [(q.name, r[0].name)],
    "GetAlias": lambda q, r: [(q.name, r[0].name)],
    "ResolveAlias": lambda q, r: [(fuzzing.parent_of(q.name), fuzzing.parent_of(r[0].name))],
    "ListAliases": lambda q, r: [(q.parent, fuzzing.parent_of(a.name)) for a in r[0].aliases],
    "RollbackAlias": lambda q, r: [(q.name, r[0].name)],
    "ListAliasEvents": lambda q, r: [(q.parent, fuzzing.parent_of(e.alias)) for e in r[0].events],
    "BatchSetAliases": lambda q, r: [(i.name, a.name) for i, a in zip(q.requests, r[0].aliases, strict=False)],
    "WatchAliases": lambda q, r: [(q.parent, fuzzing.parent_of(e.alias)) for e in r if q.parent],
}


# --------------------------------------------------------------------------- server


class FuzzedRegistry(fuzzing.FuzzedService):
    """A registry seeded for fuzzing, and the property every call must satisfy."""

    stub_class = registry_pb2_grpc.RegistryServiceStub

    def __init__(self, server: fuzzing.ServerProcess, objects: pathlib.Path) -> None:
        super().__init__(server, objects, self._read)

    def probe(self) -> None:
        self.stub.GetModel(pb.GetModelRequest(name=f"models/{SENTINEL}"), timeout=10)

    def _create_versions(self, model: str, count: int) -> None:
        for _ in range(count):
            self.stub.CreateModelVersion(
                pb.CreateModelVersionRequest(
                    parent=f"models/{model}",
                    model_version=pb.ModelVersion(
                        artifact=pb.Artifact(
                            uri=f"s3://bucket/{model}.onnx", sha256=SHA, size_bytes=10, format=pb.ARTIFACT_FORMAT_ONNX
                        )
                    ),
                ),
                timeout=30,
            )

    def _aliases(self, model: str) -> set[str]:
        listed = self.stub.ListAliases(pb.ListAliasesRequest(parent=f"models/{model}"), timeout=30)
        return {alias.name.rsplit("/", 1)[-1] for alias in listed.aliases}

    def seed(self) -> None:
        """Create what the strategies aim at; again after a delete, which only aims at ``doomed``."""
        for model in (*MODELS, SENTINEL):
            try:
                self.stub.CreateModel(pb.CreateModelRequest(model_id=model, model=pb.Model(labels={"team": "risk"})))
            except grpc.RpcError as error:
                assert error.code() is grpc.StatusCode.ALREADY_EXISTS, error
        if not self._versions("churn"):
            self._create_versions("churn", 3)
            version = pb.ModelVersion(artifact=pb.Artifact(format=pb.ARTIFACT_FORMAT_ONNX))
            header = pb.UploadModelVersionHeader(parent="models/churn", model_version=version)
            self.stub.UploadModelVersion(
                iter([pb.UploadModelVersionRequest(header=header), pb.UploadModelVersionRequest(chunk=ARTIFACT)]),
                timeout=30,
            )
            for number in (3, 4):  # two events, so that RollbackAlias has somewhere to go
                self.stub.SetAlias(pb.SetAliasRequest(name="models/churn/aliases/production", version=number))
            self.stub.SetAlias(pb.SetAliasRequest(name="models/churn/aliases/staging", version=1))
            self._create_versions("fraud", 1)
        self._seed_doomed()
        self.dirty = False

    def _seed_doomed(self) -> None:
        """``models/doomed``: versions 1 and 2, aliases on 2; made anew once a delete took a part."""
        try:
            numbers = [v.version for v in self._versions(DOOMED)]
            aliases = self._aliases(DOOMED)
        except grpc.RpcError:
            numbers, aliases = [], set()
        if sorted(numbers) == [1, 2] and aliases == {"production", "staging"}:
            return
        for alias in aliases:
            self.stub.DeleteAlias(pb.DeleteAliasRequest(name=f"models/{DOOMED}/aliases/{alias}"), timeout=30)
        try:
            self.stub.DeleteModel(pb.DeleteModelRequest(name=f"models/{DOOMED}", force=True), timeout=30)
        except grpc.RpcError as error:
            assert error.code() is grpc.StatusCode.NOT_FOUND, error
        self.stub.CreateModel(pb.CreateModelRequest(model_id=DOOMED), timeout=30)
        self._create_versions(DOOMED, 2)
        for alias in ("production", "staging"):
            self.stub.SetAlias(pb.SetAliasRequest(name=f"models/{DOOMED}/aliases/{alias}", version=2), timeout=30)

    def _versions(self, model: str) -> list[pb.ModelVersion]:
        request = pb.ListModelVersionsRequest(parent=f"models/{model}", page_size=1000)
        return list(self.stub.ListModelVersions(request).model_versions)

    def parts(self, call: Call) -> list[str]:
        """What a call may change: the model list, the objects, and the models it names."""
        named = fuzzing.request_strings(call.request)
        models = [
            m
            for m in (*MODELS, DOOMED)
            if any(text in (m, f"models/{m}") or text.startswith(f"models/{m}/") for text in named)
        ]
        return [
            "models",
            "object store",
            *(f"models/{m}/{kind}" for m in models for kind in ("versions", "aliases", "events")),
        ]

    def _read(self, part: str) -> Any:
        """One part of what a caller (or a reader of the bucket) can see."""
        if part == "models":
            return self.listing("ListModels", pb.ListModelsRequest(page_size=1000), "models")
        if part == "object store":
            files = (path for path in self.objects.rglob("*") if path.is_file())
            return sorted(
                (path.relative_to(self.objects).as_posix(), path.stat().st_size, path.stat().st_mtime_ns)
                for path in files
            )
        parent, kind = part.rsplit("/", 1)
        if kind == "versions":
            return self.listing(
                "ListModelVersions", pb.ListModelVersionsRequest(parent=parent, page_size=1000), "model_versions"
            )
        if kind == "aliases":
            return self.listing("ListAliases", pb.ListAliasesRequest(parent=parent, page_size=1000), "aliases")
        return self.listing("ListAliasEvents", pb.ListAliasEventsRequest(parent=parent, page_size=1000), "events")

    def undo(self, rpc: str, responses: tuple[Any, ...], before: dict[str, Any]) -> None:
        """Delete what a successful call created: a model, a version, a new alias (never a
        seeded resource: versions are new, and seeded aliases were there before)."""
        known = {
            pb.Alias.FromString(item).name
            for part, items in before.items()
            if part.endswith("/aliases")
            for item in items
            if isinstance(item, bytes)
        }
        try:
            if rpc == "CreateModel":
                self.stub.DeleteModel(pb.DeleteModelRequest(name=responses[0].name, force=True), timeout=30)
            elif rpc in ("CreateModelVersion", "UploadModelVersion"):
                self.stub.DeleteModelVersion(pb.DeleteModelVersionRequest(name=responses[0].name), timeout=30)
            elif rpc in ("SetAlias", "BatchSetAliases"):
                aliases = responses[0].aliases if rpc == "BatchSetAliases" else [responses[0]]
                for alias in aliases:
                    if alias.name not in known:
                        self.stub.DeleteAlias(pb.DeleteAliasRequest(name=alias.name), timeout=30)
        except grpc.RpcError:
            self.dirty = True  # whatever it left, the next seed() makes sure the targets exist

    def check(self, call: Call) -> None:
        """The property: a live server, a sane status and response, no trace of a failed change."""
        if self.dirty:
            self.seed()
            self.visible.forget()
        mutating = call.rpc in MUTATING
        before = self.visible.take(self.parts(call) if mutating else [])
        watch = call.rpc == "WatchAliases"
        mark = self.server.log_mark()
        outcome = fuzzing.call_rpc(
            self.stub, SERVICE.methods_by_name[call.rpc], call.request, timeout=0.1 if watch else 60
        )
        try:
            # First, so that the server is done with the call (its span records the error)
            # before a failure is reported.
            self.check_alive(outcome)
            fuzzing.check_outcome(outcome, allow_deadline=watch, server_errors=lambda: self.server.errors_since(mark))
            if outcome.code is grpc.StatusCode.OK:
                fuzzing.check_names(outcome, NAMES)
                if call.rpc in SAME_RESOURCE:
                    fuzzing.check_same_resource(outcome, SAME_RESOURCE[call.rpc](call.request, outcome.responses))
            elif mutating:
                self.visible.check_unchanged(before, outcome)
        finally:
            if mutating and outcome.code is grpc.StatusCode.OK:
                # Undo creations, so that a replay by the shrinker meets the same state.
                self.undo(call.rpc, outcome.responses, before)
                self.visible.forget()
                self.dirty = self.dirty or call.rpc in DESTRUCTIVE


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzedRegistry]:
    """``ferry-registry`` in a process of its own, on SQLite and the local object store."""
    state = tmp_path_factory.mktemp("registry-fuzz")
    env = {
        "FERRY_STATE_DIR": str(state),
        "FERRY_LOG_LEVEL": "warning",
        "FERRY_REGISTRY_MAX_ARTIFACT_BYTES": str(MAX_ARTIFACT_BYTES),
        "FERRY_REGISTRY_WATCH_POLL_MS": "50",
    }
    STORE["uri"] = (state / "objects").resolve().as_uri() + "/"
    server = fuzzing.ServerProcess("ferry_registry", "registry", env, state / "server.log")
    server.start()
    try:
        fuzzed = FuzzedRegistry(server, state / "objects")
        fuzzed.seed()
        yield fuzzed
        fuzzed.close()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fuzzed(registry: FuzzedRegistry) -> FuzzedRegistry:
    return registry


# The tests every fuzzed service runs (ferry_common.fuzzing.rpc_tests), then this service's own.
globals().update(fuzzing.rpc_tests(CALLS, SERVICE.methods_by_name, SWEEP_EXTRA))

# ---------------------------------------------------------------------------- tests
