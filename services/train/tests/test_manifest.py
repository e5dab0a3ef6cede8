"""The PyTorchJob that RenderTrainingJobManifest returns, checked without a cluster.

- Against the Kubeflow Training Operator's own models (the `kubeflow-training` package):
  the rendered dict is deserialised into `KubeflowOrgV1PyTorchJob` (which builds the
  Kubernetes core models of the pod template too) and serialised back. A field the models do
  not know is dropped on the way and a wrongly typed value is converted, so anything but an
  identical round trip is an error; a missing required field raises in the model's setter.
- The pod template, which is core Kubernetes, against the Kubernetes 1.30 schema
  (`kubernetes-validate`, strict), as tests/test_deploy_manifests.py checks deploy/k8s.
- The rendered torchrun command run for real: two "pods" on loopback, with the `$(VAR)`
  references expanded as the kubelet would from the operator's variables.
"""

from __future__ import annotations

import copy
import os
import pathlib
import re
import socket
import subprocess
import sys
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubeflow.training import ApiClient

from ferry_common.errors import FailedPrecondition, InvalidArgument
from ferry_common.settings import load_settings
from ferry_train.manifest import (
    MAX_NAME_LENGTH,
    JobManifestSpec,
    ManifestSettings,
    kubernetes_name,
    render_pytorchjob,
    to_yaml,
    worker_command,
)

K8S_VERSION = "1.30.0"
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
SECRET_KEYS = {"FERRY_S3_ACCESS_KEY", "FERRY_S3_SECRET_KEY", "FERRY_TRAIN_DATABASE_URL"}

SETTINGS = ManifestSettings(
    object_store_url="s3://ferry/jobs",
    s3_endpoint="minio.minio.svc.cluster.local:9000",
    ingest_address="ingest:50052",
    registry_address="registry:50051",
    train_address="train:50053",
    monitor_address="monitor:50055",
    otlp_endpoint="http://monitor:50055",
    image="ferry/train:0.1.0",
)


# --------------------------------------------------------------------------- helpers


def kubeflow_errors(manifest: dict[str, Any]) -> list[str]:
    """What the Kubeflow models refuse or would change in a manifest (empty = valid)."""
    client = ApiClient()
    try:
        model = client._ApiClient__deserialize(manifest, "KubeflowOrgV1PyTorchJob")  # type: ignore[attr-defined]
    except (ValueError, TypeError) as error:
        return [f"refused: {error}"]
    back = client.sanitize_for_serialization(model)
    return _differences(manifest, back, "")


def _differences(rendered: Any, parsed: Any, path: str) -> list[str]:
    if isinstance(rendered, dict) and isinstance(parsed, dict):
        out = [f"{path}.{key}: unknown to the models" for key in rendered.keys() - parsed.keys()]
        for key in rendered.keys() & parsed.keys():
            out += _differences(rendered[key], parsed[key], f"{path}.{key}")
        return out
    if isinstance(rendered, list) and isinstance(parsed, list) and len(rendered) == len(parsed):
        return [
            e for i, (a, b) in enumerate(zip(rendered, parsed, strict=True)) for e in _differences(a, b, f"{path}[{i}]")
        ]
    if type(rendered) is not type(parsed) or rendered != parsed:
        return [f"{path}: rendered {rendered!r}, models read {parsed!r}"]
    return []


def validate_pod_templates(manifest: dict[str, Any]) -> None:
    for role, replica in manifest["spec"]["pytorchReplicaSpecs"].items():
        pod_template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"{manifest['metadata']['name']}-{role.lower()}"},
            "template": replica["template"],
        }
        kubernetes_validate.validate(pod_template, K8S_VERSION, strict=True)


def containers(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    replicas = manifest["spec"]["pytorchReplicaSpecs"]
    out = {}
    for role, replica in replicas.items():
        (container,) = replica["template"]["spec"]["containers"]
        out[role] = container
    return out


def assert_valid(manifest: dict[str, Any]) -> None:
    assert kubeflow_errors(manifest) == []
    validate_pod_templates(manifest)
    assert manifest["apiVersion"] == "kubeflow.org/v1"
    assert manifest["kind"] == "PyTorchJob"


# --------------------------------------------------------------------------- shapes


def test_single_node_with_two_cpu_processes() -> None:
    manifest = render_pytorchjob(JobManifestSpec("churn-1", devices=2, num_nodes=1, accelerator="cpu"), SETTINGS)
    assert_valid(manifest)

    spec = manifest["spec"]
    assert spec["nprocPerNode"] == "2"
    assert set(spec["pytorchReplicaSpecs"]) == {"Master"}
    assert spec["pytorchReplicaSpecs"]["Master"]["replicas"] == 1
    container = containers(manifest)["Master"]
    assert container["image"] == "ferry/train:0.1.0"
    command = container["command"]
    assert command[0] == "torchrun"
    assert {"--nnodes=1", "--nproc-per-node=2"} <= set(command)
    # Each torchrun process runs exactly the worker the service starts locally.
    assert (
        command[-4:] == worker_command("churn-1")[1:] == ["-m", "ferry_train.worker", "--job", "trainingJobs/churn-1"]
    )
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "8Gi"}
    assert "nvidia.com/gpu" not in to_yaml(manifest)

    assert manifest["metadata"]["name"] == "churn-1"
    for labels in (
        manifest["metadata"]["labels"],
        spec["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["labels"],
    ):
        assert labels["app.kubernetes.io/part-of"] == "ferry"
        assert labels["ferry.dev/training-job"] == "churn-1"
    assert manifest["metadata"]["annotations"]["ferry.dev/training-job-name"] == "trainingJobs/churn-1"


def test_two_nodes_of_one_device_share_image_and_command() -> None:
    manifest = render_pytorchjob(JobManifestSpec("churn-2", devices=1, num_nodes=2, namespace="ferry"), SETTINGS)
    assert_valid(manifest)

    replicas = manifest["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 1)
    assert manifest["spec"]["nprocPerNode"] == "1"
    assert manifest["metadata"]["namespace"] == "ferry"
    master, worker = containers(manifest)["Master"], containers(manifest)["Worker"]
    assert master == worker
    assert {"--nnodes=2", "--nproc-per-node=1"} <= set(master["command"])
    # The operator names the master by container "pytorch" and port "pytorchjob-port".
    assert master["name"] == "pytorch"
    assert master["ports"][0]["name"] == "pytorchjob-port"

    env = {e["name"]: e.get("value") for e in master["env"]}
    assert env["FERRY_OBJECT_STORE_URL"] == "s3://ferry/jobs"
    assert env["FERRY_S3_ENDPOINT"] == "minio.minio.svc.cluster.local:9000"
    assert env["FERRY_INGEST_ADDRESS"] == "ingest:50052"
    assert env["FERRY_REGISTRY_ADDRESS"] == "registry:50051"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://monitor:50055"


def test_five_nodes_have_four_workers() -> None:
    manifest = render_pytorchjob(JobManifestSpec("big", devices=1, num_nodes=5), SETTINGS)
    assert_valid(manifest)
    assert manifest["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 4


def test_gpu_job_requests_its_devices_on_gpu_nodes() -> None:
    manifest = render_pytorchjob(JobManifestSpec("vision", devices=4, num_nodes=2, accelerator="gpu"), SETTINGS)
    assert_valid(manifest)

    assert manifest["spec"]["nprocPerNode"] == "4"
    for role, container in containers(manifest).items():
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "4", role
        assert "--nproc-per-node=4" in container["command"]
    pod = manifest["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


@pytest.mark.parametrize("accelerator", ["cpu", "auto", ""])
def test_cpu_and_auto_jobs_request_no_gpu(accelerator: str) -> None:
    manifest = render_pytorchjob(JobManifestSpec("tab", devices=2, accelerator=accelerator), SETTINGS)
    assert_valid(manifest)
    assert "nvidia.com/gpu" not in to_yaml(manifest)


def test_image_of_the_request_wins_over_the_setting() -> None:
    manifest = render_pytorchjob(JobManifestSpec("churn-1", image="registry.example/ferry/train:1.2"), SETTINGS)
    assert {c["image"] for c in containers(manifest).values()} == {"registry.example/ferry/train:1.2"}


# --------------------------------------------------------------------------- secrets


def test_secrets_are_only_references_to_the_documented_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "FERRY_S3_ACCESS_KEY": "AKIA-not-for-manifests",
        "FERRY_S3_SECRET_KEY": "s3-secret-value-7",
        "FERRY_AUTH_TOKEN": "bearer-token-value-9",
        "FERRY_TRAIN_DATABASE_URL": "postgresql+psycopg://ferry:db-password-3@postgres:5432/train",
    }
    env = {
        "FERRY_OBJECT_STORE_URL": "s3://ferry",
        "FERRY_S3_ENDPOINT": "minio:9000",
        "FERRY_INGEST_ADDRESS": "ingest:50052",
        "FERRY_REGISTRY_ADDRESS": "registry:50051",
        **secrets,
    }
    settings = load_settings("train", environ=env)
    manifest = render_pytorchjob(JobManifestSpec("churn-1", num_nodes=2), ManifestSettings.from_settings(settings))
    assert_valid(manifest)

    text = to_yaml(manifest)
    for value in (*secrets.values(), "db-password-3"):
        assert value not in text
    for container in containers(manifest).values():
        by_name = {e["name"]: e for e in container["env"]}
        assert by_name["FERRY_S3_ENDPOINT"]["value"] == "minio:9000"
        assert by_name["FERRY_INGEST_ADDRESS"]["value"] == "ingest:50052"
        for key in (*SECRET_KEYS, "FERRY_AUTH_TOKEN"):
            assert by_name[key] == {
                "name": key,
                "valueFrom": {"secretKeyRef": {"name": "ferry-secrets", "key": key}},
            }, key
        # The Secret deploy/k8s ships (secret.example.yaml) holds every key but the token,
        # which deploy/README.md says to add when authentication is on.
        refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
        assert refs == SECRET_KEYS | {"FERRY_AUTH_TOKEN"}


def test_secret_example_in_deploy_holds_the_keys_the_job_reads() -> None:
    root = pathlib.Path(__file__).resolve().parents[3]
    secret = yaml.safe_load((root / "deploy" / "k8s" / "secret.example.yaml").read_text())
    assert secret["metadata"]["name"] == "ferry-secrets"
    assert set(secret["stringData"]) >= SECRET_KEYS


def test_without_auth_no_token_is_referenced() -> None:
    manifest = render_pytorchjob(JobManifestSpec("churn-1"), SETTINGS)
    names = {e["name"] for e in containers(manifest)["Master"]["env"]}
    assert "FERRY_AUTH_TOKEN" not in names
    assert names >= SECRET_KEYS


def test_a_custom_secret_name_is_used() -> None:
    settings = ManifestSettings(**{**SETTINGS.__dict__, "secret_name": "train-secrets", "auth": True})
    manifest = render_pytorchjob(JobManifestSpec("churn-1"), settings)
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in containers(manifest)["Master"]["env"] if "valueFrom" in e}
    assert refs == {"train-secrets"}


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "job_id",
    [
        "Churn_Run.1",
        "2024-retrain",
        "trainingJobs/UPPER",
        "a" * 63,
        "x-" * 40,
        "---",
        "ünïcode-job",
    ],
)
def test_names_are_sanitised_into_kubernetes_names(job_id: str) -> None:
    manifest = render_pytorchjob(JobManifestSpec(job_id, num_nodes=3), SETTINGS)
    assert_valid(manifest)
    name = manifest["metadata"]["name"]
    assert DNS_1035.fullmatch(name), name
    assert len(name) <= MAX_NAME_LENGTH
    # The operator's per-pod Services: <name>-worker-<index> must stay a 63-character label.
    assert len(f"{name}-worker-99999") <= 63
    assert LABEL_VALUE.fullmatch(manifest["metadata"]["labels"]["ferry.dev/training-job"])
    # The worker is still told the job's real name.
    expected = "trainingJobs/" + job_id.removeprefix("trainingJobs/")
    assert containers(manifest)["Master"]["command"][-1] == expected
    assert manifest["metadata"]["annotations"]["ferry.dev/training-job-name"] == expected


def test_valid_ids_keep_their_name_and_different_ids_get_different_names() -> None:
    assert kubernetes_name("churn-1") == "churn-1"
    assert kubernetes_name("trainingJobs/churn-1") == "churn-1"
    assert kubernetes_name("Churn_1") != kubernetes_name("churn-1")
    assert kubernetes_name("Churn_1") != kubernetes_name("CHURN.1")
    long_a, long_b = "a" * 60 + "-x", "a" * 60 + "-y"
    assert kubernetes_name(long_a) != kubernetes_name(long_b)
    assert kubernetes_name("Churn_1") == kubernetes_name("Churn_1")


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (JobManifestSpec("churn-1", devices=0), "training_job.resources.devices"),
        (JobManifestSpec("churn-1", num_nodes=0), "training_job.resources.num_nodes"),
        (JobManifestSpec("churn-1", accelerator="tpu"), "training_job.resources.accelerator"),
        (JobManifestSpec("churn-1", image="ferry/train: 1"), "image"),
        (JobManifestSpec("churn-1", namespace="Bad_NS"), "namespace"),
        (JobManifestSpec(""), "training_job.name"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(spec: JobManifestSpec, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        render_pytorchjob(spec, SETTINGS)
    assert caught.value.field == field


def test_a_local_object_store_cannot_serve_several_nodes() -> None:
    settings = ManifestSettings(**{**SETTINGS.__dict__, "object_store_url": "file:///var/lib/ferry/objects"})
    with pytest.raises(FailedPrecondition, match="s3://"):
        render_pytorchjob(JobManifestSpec("churn-1", num_nodes=2), settings)


# --------------------------------------------------------------------------- the checks themselves


def test_kubeflow_check_catches_unknown_mistyped_and_missing_fields() -> None:
    # Guards the validation above against a check that accepts anything.
    good = render_pytorchjob(JobManifestSpec("churn-1", num_nodes=2), SETTINGS)
    assert kubeflow_errors(good) == []

    typo = copy.deepcopy(good)
    typo["spec"]["nProcPerNode"] = typo["spec"].pop("nprocPerNode")
    assert kubeflow_errors(typo)

    nested_typo = copy.deepcopy(good)
    nested_typo["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["imagePolicy"] = "x"
    assert any("imagePolicy" in e for e in kubeflow_errors(nested_typo))

    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["nprocPerNode"] = 2
    assert kubeflow_errors(wrong_type)

    no_run_policy = copy.deepcopy(good)
    del no_run_policy["spec"]["runPolicy"]
    assert kubeflow_errors(no_run_policy)

    no_container_name = copy.deepcopy(good)
    del no_container_name["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["name"]
    assert kubeflow_errors(no_container_name)


def test_pod_template_check_rejects_a_broken_template() -> None:
    broken = render_pytorchjob(JobManifestSpec("churn-1"), SETTINGS)
    broken["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["resources"]["limitz"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_pod_templates(broken)


# --------------------------------------------------------------------------- YAML


@pytest.mark.parametrize("spec", [JobManifestSpec("churn-1", devices=2), JobManifestSpec("v", 4, 3, "gpu")])
def test_yaml_round_trips(spec: JobManifestSpec) -> None:
    manifest = render_pytorchjob(spec, SETTINGS)
    text = to_yaml(manifest)
    assert yaml.safe_load(text) == manifest
    assert text.startswith("apiVersion: kubeflow.org/v1\nkind: PyTorchJob\n")
    # Strings that YAML would read as other types stay strings.
    assert "value: 'false'" in text
    assert "nprocPerNode: '" in text


def test_example_in_deploy_is_what_the_renderer_produces() -> None:
    root = pathlib.Path(__file__).resolve().parents[3]
    example = yaml.safe_load((root / "deploy" / "examples" / "train-pytorchjob.example.yaml").read_text())
    assert kubeflow_errors(example) == []
    validate_pod_templates(example)
    spec = JobManifestSpec("churn-1", devices=2, num_nodes=2, namespace="ferry")
    assert example == render_pytorchjob(spec, SETTINGS), "regenerate the example with to_yaml(render_pytorchjob(...))"


# --------------------------------------------------------------------------- torchrun


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _expand(text: str, env: dict[str, str]) -> str:
    """What the kubelet does with `$(VAR)` in a container's command."""
    return re.sub(r"\$\((\w+)\)", lambda match: env[match[1]], text)


STUB_WORKER = """
import argparse, json, os, sys
import torch.distributed as dist
parser = argparse.ArgumentParser()
parser.add_argument("--job", required=True)
args = parser.parse_args()
dist.init_process_group("gloo")
import torch
total = torch.tensor([dist.get_rank()])
dist.all_reduce(total)
print(json.dumps({"job": args.job, "rank": dist.get_rank(), "world": dist.get_world_size(), "sum": int(total)}))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_rendered_command_runs_under_torchrun_on_two_pods(tmp_path: pathlib.Path) -> None:
    """Master and worker pod, 1 process each, on loopback: the rendered arguments rendezvous.

    A stand-in `ferry_train.worker` (first on PYTHONPATH) joins the process group and
    all-reduces its rank; the real worker's training is tested with the service.
    """
    package = tmp_path / "ferry_train"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "worker.py").write_text(STUB_WORKER)

    manifest = render_pytorchjob(JobManifestSpec("churn-1", devices=1, num_nodes=2), SETTINGS)
    port = str(_free_port())
    runs = []
    for role, rank in (("Master", "0"), ("Worker", "1")):
        operator_env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": rank}
        command = [_expand(part, operator_env) for part in containers(manifest)[role]["command"]]
        assert command[0] == "torchrun"
        env = {**os.environ, **operator_env, "PYTHONPATH": str(tmp_path)}
        runs.append(
            subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", *command[1:]],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err[-3000:]
        results += [yaml.safe_load(line) for line in out.splitlines() if line.startswith("{")]
    assert sorted(r["rank"] for r in results) == [0, 1]
    assert {(r["job"], r["world"], r["sum"]) for r in results} == {("trainingJobs/churn-1", 2, 1)}
