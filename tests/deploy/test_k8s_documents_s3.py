"""The `documents-s3` component: an overlay that lists it keeps intake's documents in an object store.

Rendered with `kubectl kustomize` as a site would write it (the district overlay, the component, the
ConfigMap with the bucket), then validated like every overlay and read back as intake reads its
environment: the settings it gets name the bucket, the shared volume is gone, and intake may reach
the store through the network policies.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from services.common.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BUCKET_URL = "s3://onestop-210211-documents/docs"
Obj = dict[str, Any]


def _checker() -> ModuleType:
    name = "onestop_k8s_check"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "deploy" / "k8s_check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


k8s_check = _checker()


def _site(tmp_path: Path, *, config: bool = True, base_only: bool = False) -> list[Obj]:
    """Render a site overlay using the component (and, unless config=False, naming its bucket)."""
    site = tmp_path / "site"
    site.mkdir()
    up = os.path.relpath(K8S, site)
    resource = f"{up}/base" if base_only else f"{up}/overlays/district"
    lines = [
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "namespace: onestop-210211",
        f"resources: [{resource}]",
        f"components: [{up}/components/documents-s3]",
    ]
    if config:
        lines += [
            "configMapGenerator:",
            "  - name: onestop-documents-s3",
            "    literals:",
            f"      - ONESTOP_DOCUMENT_STORE={BUCKET_URL}",
            "      - AWS_ENDPOINT_URL_S3=https://s3.example.gov",
            "      - ONESTOP_S3_ADDRESSING_STYLE=path",
        ]
    (site / "kustomization.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return k8s_check.render(site)


def _named(objs: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def _intake(objs: list[Obj]) -> Obj:
    return _named(objs, "Deployment")["intake"]["spec"]["template"]["spec"]


def _env_of_intake(objs: list[Obj]) -> dict[str, str]:
    """intake's environment as the kubelet would resolve it from the rendered ConfigMaps."""
    maps = {name: o.get("data", {}) for name, o in _named(objs, "ConfigMap").items()}
    (container,) = [c for c in _intake(objs)["containers"] if c["name"] == "intake"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("configMapKeyRef")
        if ref is not None:
            data = maps.get(ref["name"], {})
            if ref["key"] in data:
                env[item["name"]] = data[ref["key"]]
            else:
                assert ref.get("optional"), f"{item['name']}: no ConfigMap/{ref['name']} key {ref['key']}"
        elif "value" in item:
            env[item["name"]] = item["value"]
    return env


def test_a_site_with_the_component_gives_intake_its_bucket_and_no_shared_volume(tmp_path: Path) -> None:
    objs = _site(tmp_path)
    assert k8s_check.validate_objects(objs, k8s_check.load_schemas(k8s_check.kubernetes_version())) == []
    assert k8s_check.check_references(objs) == []

    env = _env_of_intake(objs)
    settings = load_settings(service="intake", env=env | {"ONESTOP_DATABASE_URL": "postgresql+asyncpg://x"})
    assert (settings.document_store, settings.s3_addressing_style) == (BUCKET_URL, "path")
    assert env["AWS_ENDPOINT_URL_S3"] == "https://s3.example.gov"

    assert "onestop-documents" not in _named(objs, "PersistentVolumeClaim")
    (documents,) = [v for v in _intake(objs)["volumes"] if v["name"] == "documents"]
    assert "persistentVolumeClaim" not in documents and documents["emptyDir"]["sizeLimit"]

    (container,) = _intake(objs)["containers"][:1]
    secrets = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert secrets["AWS_ACCESS_KEY_ID"] == {"name": "onestop-documents-s3", "key": "access-key-id"}
    assert secrets["AWS_SECRET_ACCESS_KEY"] == {"name": "onestop-documents-s3", "key": "secret-access-key"}
    assert "onestop-documents-s3" in k8s_check.referenced_secrets(objs)
    assert "`onestop-documents-s3`" in (REPO / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")

    egress = _named(objs, "NetworkPolicy")["intake-egress"]["spec"]["egress"]
    assert {"protocol": "TCP", "port": 443} in [p for rule in egress for p in rule.get("ports", [])]


def test_a_site_that_names_no_bucket_leaves_intake_without_its_configuration(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="ONESTOP_DOCUMENT_STORE: no ConfigMap/onestop-documents-s3"):
        _env_of_intake(_site(tmp_path, config=False))


def test_the_component_works_without_the_network_policies(tmp_path: Path) -> None:
    objs = _site(tmp_path, base_only=True)
    assert "intake-egress" not in _named(objs, "NetworkPolicy")
    assert _env_of_intake(objs)["ONESTOP_DOCUMENT_STORE"] == BUCKET_URL
