"""The Kubernetes overlays deploy every onestop process probed, limited, locked down, on its ports.

Each overlay under deploy/k8s/overlays is rendered with `kubectl kustomize` (from the venv) and
inspected as the API server would receive it. The expected processes come from the code: every
directory under services/ with a __main__.py (except common and cli), every service in
services.common.ports.GRPC_PORTS, and the gateway; their ports come only from services.common.ports.

The checks are plain functions returning problems, so the last tests can show that each one fails
on a broken manifest.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from services.common import ports

REPO = Path(__file__).resolve().parents[2]
GATEWAY = "gateway"
# fakesms stands in for a real SMS gateway in the demo and tests; it is never deployed.
EXCLUDED_SERVICE_DIRS = {"common", "cli", "fakesms"}

Obj = dict[str, Any]


def _load_checker() -> ModuleType:
    path = REPO / "deploy" / "k8s_check.py"
    spec = importlib.util.spec_from_file_location("onestop_k8s_check", path)
    assert spec and spec.loader, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


k8s_check = _load_checker()
OVERLAYS = {path.name: path for path in k8s_check.overlays()}


# --- what the code says should run ------------------------------------------------------------------


def service_dirs() -> set[str]:
    """Services that have an entry point under services/ (not the shared code or the CLI)."""
    root = REPO / "services"
    return {
        p.name
        for p in root.iterdir()
        if p.is_dir() and p.name not in EXCLUDED_SERVICE_DIRS and (p / "__main__.py").exists()
    }


def grpc_services() -> list[str]:
    """Every gRPC service: the ones with a default port and the ones with a __main__.py."""
    return sorted(set(ports.GRPC_PORTS) | service_dirs())


def processes() -> list[str]:
    return [*grpc_services(), GATEWAY]


def expected_ports(process: str) -> dict[str, int]:
    """Container ports by name, from services.common.ports only."""
    if process == GATEWAY:
        return {"http": ports.HTTP_PORT, "metrics": ports.METRICS_PORT}
    expected = {"grpc": ports.GRPC_PORTS[process], "metrics": ports.METRICS_PORT}
    if process == "intake":
        expected["interconnect"] = ports.INTERCONNECT_PORT
    return expected


# --- rendering -------------------------------------------------------------------------------------------


@functools.cache
def rendered(overlay: str) -> tuple[Obj, ...]:
    return tuple(k8s_check.render(OVERLAYS[overlay]))


def objects(overlay: str, kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in rendered(overlay) if o["kind"] == kind}


def node_config(overlay: str) -> dict[str, str]:
    """The data of the generated onestop-config ConfigMap (its name carries a hash suffix)."""
    maps = [
        o
        for o in rendered(overlay)
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("onestop-config")
    ]
    assert len(maps) == 1, f"{overlay}: expected one onestop-config ConfigMap, found {len(maps)}"
    return dict(maps[0]["data"])


# --- the checks (pure functions) ----------------------------------------------------------------------------


def missing_deployments(objs: Iterable[Obj], wanted: Iterable[str]) -> list[str]:
    """Processes that have no Deployment of their own name."""
    names = {o["metadata"]["name"] for o in objs if o["kind"] == "Deployment"}
    return [name for name in wanted if name not in names]


def _main_container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    name = deployment["metadata"]["name"]
    return next((c for c in containers if c["name"] == name), containers[0])


def deployment_problems(deployment: Obj, process: str) -> list[str]:
    """Everything wrong with one process's Deployment: probes, limits, security, ports, drain."""
    problems: list[str] = []
    pod = deployment["spec"]["template"]["spec"]
    container = _main_container(deployment)
    want = expected_ports(process)

    if container.get("args") != ["service", process]:
        problems.append(f"args {container.get('args')} should be ['service', '{process}']")

    # probes
    for probe in ("livenessProbe", "readinessProbe"):
        spec = container.get(probe)
        if not spec:
            problems.append(f"no {probe}")
            continue
        if process == GATEWAY:
            path = "/healthz" if probe == "livenessProbe" else "/readyz"
            http = spec.get("httpGet") or {}
            if http.get("path") != path or http.get("port") not in ("http", want["http"]):
                problems.append(f"{probe} should GET {path} on the http port, not {spec}")
        else:
            grpc = spec.get("grpc") or {}
            if grpc.get("port") != want["grpc"]:
                problems.append(f"{probe} should be a grpc probe on {want['grpc']}, not {spec}")

    # resources
    resources = container.get("resources") or {}
    for bound in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in (resources.get(bound) or {}):
                problems.append(f"no {bound}.{resource}")

    # security context (container setting wins over the pod's)
    pod_sc = pod.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
        problems.append("runAsNonRoot is not true")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        problems.append("capabilities do not drop ALL")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        problems.append(f"seccompProfile is {seccomp!r}, not RuntimeDefault")
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    if uid != 10001:
        problems.append(f"runAsUser is {uid!r}, not the image's uid 10001")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
    if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}):
        problems.append("no emptyDir mounted at /tmp (the root filesystem is read-only)")

    # draining
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < 45:
        problems.append(f"terminationGracePeriodSeconds {grace} is too short to drain")
    strategy = deployment["spec"].get("strategy", {}).get("rollingUpdate", {})
    if strategy.get("maxUnavailable") not in (0, "0", "0%"):
        problems.append("a rolling update may take a serving pod away (maxUnavailable != 0)")

    # ports
    actual = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if actual != want:
        problems.append(f"container ports {actual} differ from services.common.ports {want}")
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    port_var, port = (
        ("ONESTOP_HTTP_PORT", want["http"]) if process == GATEWAY else ("ONESTOP_GRPC_PORT", want["grpc"])
    )
    if env.get(port_var) != str(port):
        problems.append(f"{port_var} is {env.get(port_var)!r}, not {port}")
    return problems


def service_problems(service: Obj | None, process: str) -> list[str]:
    """The Service of a process must publish the same ports under the same names."""
    if service is None:
        return ["no Service"]
    published = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    want = expected_ports(process)
    return [] if published == want else [f"Service ports {published} differ from {want}"]


def unreachable_ports(objs: Iterable[Obj], deployment: Obj) -> list[str]:
    """Serving ports of a Deployment that no NetworkPolicy lets anyone reach (under default deny)."""
    objs = list(objs)
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    if not policies:
        return []
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    open_ports: set[int] = set()
    for policy in policies:
        spec = policy["spec"]
        if "Ingress" not in spec.get("policyTypes", []):
            continue
        if not k8s_check._matches(spec["podSelector"], labels):
            continue
        for rule in spec.get("ingress", []):
            open_ports.update(p["port"] for p in rule.get("ports", []))
    container = _main_container(deployment)
    return [
        f"{p['name']} ({p['containerPort']})"
        for p in container.get("ports", [])
        if p["containerPort"] not in open_ports
    ]


# --- tests: what each overlay deploys ---------------------------------------------------------------------------


def test_there_are_city_and_district_overlays() -> None:
    assert {"city", "district"} <= set(OVERLAYS)


def test_every_service_with_an_entry_point_has_a_default_port() -> None:
    missing = service_dirs() - set(ports.GRPC_PORTS)
    assert not missing, f"add {sorted(missing)} to services/common/ports.py GRPC_PORTS"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_process_has_a_deployment(overlay: str) -> None:
    assert missing_deployments(rendered(overlay), processes()) == []


@pytest.mark.parametrize("process", processes())
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_deployment_is_probed_limited_locked_down_and_on_its_ports(overlay: str, process: str) -> None:
    deployment = objects(overlay, "Deployment").get(process)
    assert deployment is not None, f"{overlay}: no Deployment {process}"
    assert deployment_problems(deployment, process) == []


@pytest.mark.parametrize("process", processes())
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_service_publishes_the_default_ports(overlay: str, process: str) -> None:
    assert service_problems(objects(overlay, "Service").get(process), process) == []


@pytest.mark.parametrize("process", processes())
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_network_policies_leave_every_serving_port_reachable(overlay: str, process: str) -> None:
    objs = rendered(overlay)
    assert "default-deny" in objects(overlay, "NetworkPolicy"), f"{overlay}: no default-deny policy"
    assert unreachable_ports(objs, objects(overlay, "Deployment")[process]) == []


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_overlay_sets_its_center(overlay: str) -> None:
    config = node_config(overlay)
    center = config.get("ONESTOP_CENTER", "")
    assert re.fullmatch(r"[0-9A-Z][0-9A-Z-]{1,31}", center), f"{overlay}: ONESTOP_CENTER={center!r}"
    assert config.get("ONESTOP_CENTER_LEVEL"), f"{overlay}: ONESTOP_CENTER_LEVEL is not set"
    namespaces = {o["metadata"].get("namespace") for o in rendered(overlay) if o["kind"] != "Namespace"}
    assert namespaces == {f"onestop-{center.lower()}"}, f"{overlay}: one namespace per center"


def test_each_overlay_is_a_different_center() -> None:
    centers = [node_config(o)["ONESTOP_CENTER"] for o in sorted(OVERLAYS)]
    assert len(set(centers)) == len(centers)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_a_child_node_names_its_parent_and_the_root_does_not(overlay: str) -> None:
    config = node_config(overlay)
    if config["ONESTOP_CENTER_LEVEL"] == "city":
        assert "ONESTOP_PARENT_ADDR" not in config
    else:
        assert re.fullmatch(r"[a-z0-9.-]+:\d+", config.get("ONESTOP_PARENT_ADDR", "")), config


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_streams_are_replicated_on_a_three_server_nats_cluster(overlay: str) -> None:
    nats = objects(overlay, "StatefulSet")["nats"]
    assert node_config(overlay)["ONESTOP_STREAM_REPLICAS"] == "3"
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["volumeClaimTemplates"], "JetStream needs persistent volumes"
    assert "sync_interval: always" in objects(overlay, "ConfigMap")["nats-config"]["data"]["nats.conf"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_images_are_pinned_by_tag(overlay: str) -> None:
    for obj in rendered(overlay):
        for template in k8s_check.pod_templates(obj):
            for container in template["spec"]["containers"]:
                image = container["image"]
                tag = image.rsplit("/", 1)[-1].partition(":")[2]
                assert tag and tag != "latest", f"{overlay}: {k8s_check.ref(obj)} uses {image}"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_migrations_job_is_applied_alone_before_the_rollout(overlay: str) -> None:
    job = objects(overlay, "Job")["onestop-migrate"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["migrate", "--all"]
    assert "onestop/rollout-order" in job["metadata"]["annotations"]
    # `kubectl apply -l onestop/phase=migrate` must bring everything the Job needs that git holds.
    phase = {
        (o["kind"], o["metadata"]["name"])
        for o in rendered(overlay)
        if o["metadata"].get("labels", {}).get("onestop/phase") == "migrate"
    }
    needed = {
        ("Job", "onestop-migrate"),
        ("ServiceAccount", job["spec"]["template"]["spec"]["serviceAccountName"]),
    }
    needed |= {
        ("ConfigMap", s["configMapRef"]["name"]) for s in container.get("envFrom", []) if "configMapRef" in s
    }
    assert needed <= phase, f"missing from the migrate phase: {needed - phase}"
    images = {
        c["image"]
        for d in objects(overlay, "Deployment").values()
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {container["image"]}, "the Job must migrate to the release the Deployments run"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_interconnect_ingress_passes_tls_through_to_intake(overlay: str) -> None:
    ingress = objects(overlay, "Ingress")["interconnect"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/ssl-passthrough"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPCS"
    assert "tls" not in ingress["spec"], "TLS must end in intake, not in the ingress"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    intake = objects(overlay, "Service")["intake"]
    port = {p["name"]: p["port"] for p in intake["spec"]["ports"]}[backend["port"]["name"]]
    assert (backend["name"], port) == ("intake", ports.INTERCONNECT_PORT)


# What intake's interconnect reads (services/common/settings.py, services/common/tls.py) and the
# file of the mounted Secret each variable must point at.
TLS_FILES = {
    "ONESTOP_TLS_CERT_FILE": "tls.crt",
    "ONESTOP_TLS_KEY_FILE": "tls.key",
    "ONESTOP_TLS_CA_FILE": "ca.crt",
}


def interconnect_problems(deployment: Obj, center: str) -> list[str]:
    """Intake must bind the interconnect, on its port, with the center's TLS Secret mounted where the env points."""
    container = _main_container(deployment)
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    problems = []
    if env.get("ONESTOP_INTERCONNECT_PORT") != str(ports.INTERCONNECT_PORT):
        problems.append(f"ONESTOP_INTERCONNECT_PORT is {env.get('ONESTOP_INTERCONNECT_PORT')!r}")
    if env.get("ONESTOP_INTERCONNECT_HOST") != "0.0.0.0":
        problems.append(
            "ONESTOP_INTERCONNECT_HOST must be 0.0.0.0 (the ingress or load balancer dials the pod IP)"
        )
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes", [])}
    for variable, key in TLS_FILES.items():
        path = env.get(variable) or ""
        mounts = [
            m for m in container.get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")
        ]
        if not mounts:
            problems.append(f"{variable}={path!r} is not inside any mounted volume")
            continue
        secret = volumes.get(mounts[0]["name"], {}).get("secret") or {}
        if secret.get("secretName") != f"onestop-{center}-interconnect-tls":
            problems.append(f"{variable} is not in the Secret onestop-{center}-interconnect-tls ({secret})")
        items = {i["key"]: i["path"] for i in secret.get("items", [])}
        if items and key not in items:
            problems.append(f"the Secret's items do not project {key}")
        if not path.endswith("/" + key):
            problems.append(f"{variable}={path!r} should name the Secret's {key}")
    return problems


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_intake_mounts_the_interconnect_tls_secret_where_the_code_reads_it(overlay: str) -> None:
    center = node_config(overlay)["ONESTOP_CENTER"]
    assert interconnect_problems(objects(overlay, "Deployment")["intake"], center) == []


def test_interconnect_problems_are_reported() -> None:
    broken = copy.deepcopy(objects("city", "Deployment")["intake"])
    container = _main_container(broken)
    container["env"] = [
        e for e in container["env"] if e["name"] not in ("ONESTOP_TLS_CA_FILE", "ONESTOP_INTERCONNECT_HOST")
    ]
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["mountPath"] != "/etc/onestop/tls"]
    problems = interconnect_problems(broken, "210200")
    assert any("ONESTOP_INTERCONNECT_HOST" in p for p in problems)
    assert any("ONESTOP_TLS_CA_FILE" in p for p in problems)
    assert any("ONESTOP_TLS_CERT_FILE" in p and "not inside" in p for p in problems)


def test_the_city_publishes_the_interconnect_port_to_its_children() -> None:
    service = objects("city", "Service")["intake-interconnect"]
    spec = service["spec"]
    assert spec["type"] == "LoadBalancer" and spec["externalTrafficPolicy"] == "Local"
    assert spec["loadBalancerSourceRanges"], "the door is for the government network only"
    assert [(p["port"], p["targetPort"]) for p in spec["ports"]] == [
        (ports.INTERCONNECT_PORT, "interconnect")
    ]
    intake = objects("city", "Deployment")["intake"]
    assert k8s_check._matches(
        {"matchLabels": spec["selector"]}, intake["spec"]["template"]["metadata"]["labels"]
    )
    # NetworkPolicy admits the same ranges on that port, nothing else.
    policy = objects("city", "NetworkPolicy")["intake-interconnect-children"]
    [rule] = policy["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [ports.INTERCONNECT_PORT]
    assert sorted(b["ipBlock"]["cidr"] for b in rule["from"]) == sorted(spec["loadBalancerSourceRanges"])


def test_a_district_publishes_no_load_balancer() -> None:
    services = objects("district", "Service").values()
    assert not [s for s in services if s["spec"].get("type") == "LoadBalancer"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_secret_the_overlay_needs_is_documented(overlay: str) -> None:
    operations = (REPO / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    center = node_config(overlay)["ONESTOP_CENTER"]
    for secret in k8s_check.referenced_secrets(rendered(overlay)):
        generic = secret.replace(center, "<center>")
        assert generic in operations, f"docs/OPERATIONS.md does not say how to create {generic}"


# --- tests: strict validation ------------------------------------------------------------------------------------


@functools.cache
def schemas() -> Any:
    return k8s_check.load_schemas(k8s_check.kubernetes_version())


def test_validation_targets_a_current_kubernetes() -> None:
    import kubernetes_validate.utils as kv
    from packaging.version import Version

    version = k8s_check.kubernetes_version()
    assert version in kv.all_versions()
    # 1.37 was the newest schema set shipped when this was written; .ci/k8s-check prints a note
    # when kubernetes-validate ships a newer one, so that DEFAULT_K8S_VERSION is bumped on purpose.
    assert Version(version) >= Version("1.37")


def test_crd_excerpts_are_valid_custom_resource_definitions() -> None:
    assert {kind for _, kind in schemas().custom} == {"Cluster", "ServiceMonitor"}
    for crd in schemas().crds:
        assert k8s_check.validate_object(crd, schemas()) == []


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_rendered_object_passes_strict_validation(overlay: str) -> None:
    assert k8s_check.validate_objects(rendered(overlay), schemas()) == []


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_objects_refer_to_objects_that_exist(overlay: str) -> None:
    assert k8s_check.check_references(list(rendered(overlay))) == []


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_nats_server_accepts_the_cluster_configuration(overlay: str) -> None:
    assert k8s_check.check_nats_config(rendered(overlay)) == []


def test_ci_script_passes() -> None:
    proc = subprocess.run(
        [str(REPO / ".ci" / "k8s-check")], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- tests: the checks fail when the manifests are wrong ------------------------------------------------------


def _intake() -> Obj:
    return copy.deepcopy(objects("city", "Deployment")["intake"])


def test_a_missing_deployment_is_reported() -> None:
    objs = [
        o for o in rendered("city") if not (o["kind"] == "Deployment" and o["metadata"]["name"] == "approval")
    ]
    assert missing_deployments(objs, processes()) == ["approval"]


def test_a_missing_probe_is_reported() -> None:
    broken = _intake()
    del _main_container(broken)["readinessProbe"]
    assert "no readinessProbe" in deployment_problems(broken, "intake")


def test_a_probe_on_the_wrong_port_is_reported() -> None:
    broken = _intake()
    _main_container(broken)["livenessProbe"] = {"grpc": {"port": 50052}}
    assert any("livenessProbe" in p for p in deployment_problems(broken, "intake"))


def test_missing_limits_are_reported() -> None:
    broken = _intake()
    del _main_container(broken)["resources"]["limits"]
    assert {"no limits.cpu", "no limits.memory"} <= set(deployment_problems(broken, "intake"))


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("readOnlyRootFilesystem", False, "readOnlyRootFilesystem is not true"),
        ("allowPrivilegeEscalation", True, "allowPrivilegeEscalation is not false"),
        ("runAsNonRoot", False, "runAsNonRoot is not true"),
        ("capabilities", {"drop": ["NET_RAW"]}, "capabilities do not drop ALL"),
        ("seccompProfile", {"type": "Unconfined"}, "seccompProfile is 'Unconfined', not RuntimeDefault"),
    ],
)
def test_a_weakened_security_context_is_reported(field: str, value: Any, problem: str) -> None:
    broken = _intake()
    _main_container(broken)["securityContext"][field] = value
    assert problem in deployment_problems(broken, "intake")


def test_a_container_port_that_differs_from_the_ports_module_is_reported() -> None:
    broken = _intake()
    _main_container(broken)["ports"][0]["containerPort"] = 50099
    assert any("container ports" in p for p in deployment_problems(broken, "intake"))


def test_an_unknown_field_fails_strict_validation() -> None:
    broken = _intake()
    container = _main_container(broken)
    container["readinesProbe"] = container.pop("readinessProbe")
    errors = k8s_check.validate_objects([broken], schemas())
    assert errors and "readinesProbe" in errors[0]


def test_a_bad_custom_resource_fails_validation() -> None:
    cluster = copy.deepcopy(objects("city", "Cluster")["onestop-db"])
    cluster["spec"]["primaryUpdateStrategy"] = "whenever"
    cluster["spec"]["storage"]["sise"] = "1Gi"
    errors = k8s_check.validate_objects([cluster], schemas())
    assert any("primaryUpdateStrategy" in e for e in errors)
    assert any("sise" in e for e in errors)


def test_a_kind_without_any_schema_fails_validation() -> None:
    unknown = {"apiVersion": "example.org/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert "no schema" in k8s_check.validate_objects([unknown], schemas())[0]


def test_a_service_that_selects_no_pod_is_reported() -> None:
    objs = [copy.deepcopy(o) for o in rendered("city")]
    service = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "routing")
    service["spec"]["selector"] = {"app.kubernetes.io/name": "rooting"}
    assert any("Service/routing" in e for e in k8s_check.check_references(objs))


def test_a_closed_port_is_reported() -> None:
    objs = [
        o
        for o in rendered("city")
        if not (o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "routing-ingress")
    ]
    assert unreachable_ports(objs, objects("city", "Deployment")["routing"]) == ["grpc (50052)"]
