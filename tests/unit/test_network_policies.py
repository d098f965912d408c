"""The network policies admit exactly the gRPC calls the code makes between a node's processes.

The call graph is read from the code, not from a list: a process calls a gRPC service where its
package uses `<module>_pb2_grpc.<Service>Stub` or dials a sibling with `settings.peer("<service>")`;
a process serves a gRPC service where its package names the service's descriptor
(`services_by_name["<Service>"]`, intake's `SERVICES["Interconnect"]`). The policies are the
`components/network-policies` YAML both overlays include, under its default deny (ingress and
egress). A new call without a policy fails here, and so does a policy for a call nobody makes.
"""

from __future__ import annotations

import ast
import functools
import importlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.ports import GRPC_PORTS, INTERCONNECT_PORT

REPO = Path(__file__).resolve().parents[2]
PROTOS = REPO / "protos"
POLICY_DIR = REPO / "deploy" / "k8s" / "components" / "network-policies"
OVERLAYS = REPO / "deploy" / "k8s" / "overlays"
PACKAGES = {**{s: REPO / "services" / s for s in GRPC_PORTS}, "gateway": REPO / "gateway"}
# Served on intake's interconnect port to the child nodes: the caller is another node's intake.
NODE_TO_NODE = {"Interconnect"}

Obj = dict[str, Any]


# --- the call graph, from the code ------------------------------------------------------------------


@functools.cache
def grpc_service_names() -> frozenset[str]:
    """Every gRPC service of onestop's protos, by name (RoutingService, Interconnect, ...)."""
    names: set[str] = set()
    for path in sorted(PROTOS.glob("onestop/*/v1/*_pb2.py")):
        module = importlib.import_module(".".join(path.relative_to(PROTOS).with_suffix("").parts))
        names.update(module.DESCRIPTOR.services_by_name)
    return frozenset(names)


@functools.cache
def syntax(process: str) -> tuple[ast.Module, ...]:
    return tuple(ast.parse(p.read_text(encoding="utf-8")) for p in sorted(PACKAGES[process].rglob("*.py")))


def _nodes(process: str) -> Iterable[ast.AST]:
    for tree in syntax(process):
        yield from ast.walk(tree)


def stubs_used(process: str) -> set[str]:
    """The gRPC services whose client stub the process's code builds (typing-only AsyncStubs aside)."""
    used: set[str] = set()
    for node in _nodes(process):
        names: list[str] = []
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id.endswith("_pb2_grpc"):
                names.append(node.attr)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").endswith("_pb2_grpc"):
            names.extend(a.name for a in node.names)
        used.update(n[: -len("Stub")] for n in names if n.endswith("Stub") and not n.endswith("AsyncStub"))
    return used


def peers_dialled(process: str) -> set[str]:
    """Siblings the process dials by their address setting: `settings.peer("<service>")`."""
    return {
        node.args[0].value
        for node in _nodes(process)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "peer"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


def served(process: str) -> set[str]:
    """The gRPC services the process registers (it names their descriptors)."""
    return {
        node.slice.value
        for node in _nodes(process)
        if isinstance(node, ast.Subscript)
        and isinstance(node.slice, ast.Constant)
        and node.slice.value in grpc_service_names()
    }


@functools.cache
def server_of() -> dict[str, str]:
    """gRPC service name → the process that serves it."""
    servers: dict[str, str] = {}
    for process in GRPC_PORTS:
        for name in served(process):
            assert name not in servers, f"{name} is served by both {servers[name]} and {process}"
            servers[name] = process
    return servers


def _calls(process: str) -> set[str]:
    """The onestop gRPC services the process calls (grpc.health's Health rides on the same channels)."""
    return {name for name in stubs_used(process) if name in grpc_service_names()}


@functools.cache
def edges() -> frozenset[tuple[str, str]]:
    """(caller, server) for every gRPC call between two processes of one node."""
    found: set[tuple[str, str]] = set()
    for caller in PACKAGES:
        for name in _calls(caller) - NODE_TO_NODE:
            assert name in server_of(), f"{caller} calls {name}, which no service registers"
            found.add((caller, server_of()[name]))
        found.update((caller, server) for server in peers_dialled(caller))
    return frozenset(found)


# --- the policies, from the YAML --------------------------------------------------------------------


def _documents(paths: Iterable[Path]) -> list[Obj]:
    docs: list[Obj] = []
    for path in paths:
        docs.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    return docs


@functools.cache
def pod_labels() -> dict[str, Mapping[str, str]]:
    """The pod template labels of each process's Deployment in deploy/k8s/base."""
    labels: dict[str, Mapping[str, str]] = {}
    for process in PACKAGES:
        for doc in _documents([REPO / "deploy" / "k8s" / "base" / f"{process}.yaml"]):
            if doc["kind"] == "Deployment":
                labels[process] = doc["spec"]["template"]["metadata"]["labels"]
    return labels


def policies(paths: Iterable[Path] | None = None) -> list[Obj]:
    docs = _documents(sorted(POLICY_DIR.glob("*.yaml")) if paths is None else paths)
    return [d for d in docs if d.get("kind") == "NetworkPolicy"]


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Does a LabelSelector (matchLabels, matchExpressions) select these labels?"""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and labels.get(key) in values)
            or (op == "Exists" and key not in labels)
            or (op == "DoesNotExist" and key in labels)
        ):
            return False
    return True


def _opens(rule: Obj, port: int) -> bool:
    ports = rule.get("ports")
    return not ports or any(
        p.get("port") in (None, port) and p.get("protocol", "TCP") == "TCP" for p in ports
    )


def _pods_in_namespace(peers: list[Obj] | None) -> list[Obj]:
    """The pod selectors of a rule's peers that stay in the policy's namespace."""
    if not peers:
        return [{}]  # no peers: every source / destination
    return [p.get("podSelector") or {} for p in peers if "podSelector" in p and "namespaceSelector" not in p]


def admitted(docs: list[Obj], caller: str, server: str) -> list[str]:
    """Which sides of caller → server:<grpc port> the policies leave closed ([] = the call gets through)."""
    port = GRPC_PORTS[server]
    src, dst = pod_labels()[caller], pod_labels()[server]
    ingress = egress = False
    for doc in docs:
        spec = doc["spec"]
        types = spec.get("policyTypes", [])
        if "Ingress" in types and selects(spec["podSelector"], dst):
            ingress |= any(
                _opens(rule, port) and any(selects(s, src) for s in _pods_in_namespace(rule.get("from")))
                for rule in spec.get("ingress") or []
            )
        if "Egress" in types and selects(spec["podSelector"], src):
            egress |= any(
                _opens(rule, port) and any(selects(s, dst) for s in _pods_in_namespace(rule.get("to")))
                for rule in spec.get("egress") or []
            )
    closed = [] if ingress else [f"no ingress policy of {server} admits {caller} on {port}"]
    return closed + ([] if egress else [f"no egress policy of {caller} admits {server}:{port}"])


def callers_admitted(docs: list[Obj], server: str) -> set[str]:
    """The processes of the node an ingress policy admits to the server's gRPC port."""
    port, dst = GRPC_PORTS[server], pod_labels()[server]
    found: set[str] = set()
    for doc in docs:
        spec = doc["spec"]
        if "Ingress" not in spec.get("policyTypes", []) or not selects(spec["podSelector"], dst):
            continue
        for rule in spec.get("ingress") or []:
            if _opens(rule, port):
                found.update(
                    p
                    for p, labels in pod_labels().items()
                    if any(selects(s, labels) for s in _pods_in_namespace(rule.get("from")))
                )
    return found


def overlay_config(overlay: Path) -> dict[str, str]:
    """The literals the overlay merges into onestop-config."""
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text(encoding="utf-8"))
    config: dict[str, str] = {}
    for generator in kustomization.get("configMapGenerator") or []:
        for literal in generator.get("literals") or []:
            key, _, value = literal.partition("=")
            config[key] = value
    return config


# --- tests ------------------------------------------------------------------------------------------


def test_the_call_graph_read_from_the_code_holds_the_known_calls() -> None:
    known = {("gateway", s) for s in GRPC_PORTS} | {
        ("intake", "routing"),
        ("supervision", "approval"),
        ("notification", "routing"),
    }
    assert known <= edges()
    assert server_of()["Interconnect"] == "intake"


@pytest.mark.parametrize(("caller", "server"), sorted(edges()))
def test_every_grpc_call_between_processes_is_admitted_by_ingress_and_egress_policies(
    caller: str, server: str
) -> None:
    assert admitted(policies(), caller, server) == []


@pytest.mark.parametrize("server", sorted(GRPC_PORTS))
def test_a_grpc_port_admits_only_the_processes_that_call_it(server: str) -> None:
    callers = {caller for caller, s in edges() if s == server}
    assert callers_admitted(policies(), server) == callers


def test_a_call_without_a_policy_is_reported() -> None:
    docs = [d for d in policies() if d["metadata"]["name"] != "approval-ingress"]
    assert admitted(docs, "supervision", "approval") == [
        f"no ingress policy of approval admits supervision on {GRPC_PORTS['approval']}"
    ]


@pytest.mark.parametrize("overlay", sorted(p.name for p in OVERLAYS.iterdir() if p.is_dir()))
def test_a_node_with_a_parent_lets_the_interconnect_caller_dial_it(overlay: str) -> None:
    parent = overlay_config(OVERLAYS / overlay).get("ONESTOP_PARENT_ADDR")
    if not parent:
        pytest.skip(f"{overlay} is the root of its tree")
    port = int(parent.rpartition(":")[2])
    callers = [p for p in PACKAGES if _calls(p) & NODE_TO_NODE]
    assert callers, "no process calls the parent's Interconnect service"
    docs = policies([*sorted(POLICY_DIR.glob("*.yaml")), *sorted((OVERLAYS / overlay).glob("*.yaml"))])
    for caller in callers:
        assert any(
            "Egress" in d["spec"].get("policyTypes", [])
            and selects(d["spec"]["podSelector"], pod_labels()[caller])
            and any(
                _opens(rule, port) and any("ipBlock" in t for t in rule.get("to") or [])
                for rule in d["spec"].get("egress") or []
            )
            for d in docs
        ), f"{overlay}: no egress policy lets {caller} reach its parent on {port}"


def test_the_interconnect_port_is_open_to_child_nodes() -> None:
    labels = pod_labels()[server_of()["Interconnect"]]
    assert any(
        "Ingress" in d["spec"].get("policyTypes", [])
        and selects(d["spec"]["podSelector"], labels)
        and any(
            _opens(rule, INTERCONNECT_PORT) and rule.get("ports") for rule in d["spec"].get("ingress") or []
        )
        for d in policies()
    )
