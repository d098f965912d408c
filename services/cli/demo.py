"""`onestop demo`: a city node and a district node on the embedded default, with demo data."""

from __future__ import annotations

import json
import secrets
import signal
import sys
import time
import urllib.request
from pathlib import Path

from services.cli.node import LaunchError, Node, NodeConfig
from services.common.ports import SERVICES

CITY = ("210200", "city", "大连市行政服务中心 Dalian City Administrative Service Center")
DISTRICT = ("210211", "district", "甘井子区行政服务中心 Ganjingzi District Administrative Service Center")
# Demo staff (the organisation file defines their roles); passwords are made fresh for each demo.
DEMO_LOGINS = {
    "210200": ["clerk.plan", "chief.plan", "head.plan", "director", "supervisor", "tracker", "admin"],
    "210211": ["clerk.gjz.plan", "chief.gjz.plan", "supervisor.gjz", "director.gjz", "admin.gjz"],
}


def _accounts(base: Path, center: str) -> Path:
    """The demo accounts of a center: kept across runs so printed logins stay valid."""
    path = base / f"demo-accounts-{center}.json"
    if path.exists():
        return path
    accounts = {user: secrets.token_urlsafe(9) for user in DEMO_LOGINS[center]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(accounts, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def _certificates(base: Path, center: str) -> dict[str, str]:
    """Dev CA and a certificate for the center: the two nodes talk over mutual TLS like real ones."""
    from services.cli.certs_cmd import CA_CERT, init_ca, issue, tls_env

    ca = base / "ca"
    ca.mkdir(parents=True, exist_ok=True)
    if not (ca / CA_CERT).exists():
        init_ca(ca)
    cert = ca / f"{center}.pem"
    if cert.exists():
        return {
            "ONESTOP_TLS_CERT_FILE": str(cert),
            "ONESTOP_TLS_KEY_FILE": str(ca / f"{center}-key.pem"),
            "ONESTOP_TLS_CA_FILE": str(ca / CA_CERT),
        }
    return tls_env(issue(ca, center=center))


def _node(base: Path, spec: tuple[str, str, str], parent: str = "") -> Node:
    center, level, name = spec
    env = {
        "ONESTOP_DEMO_ACCOUNTS_FILE": str(_accounts(base, center)),
        "ONESTOP_DEMO": "1",
        **_certificates(base, center),
    }
    return Node(
        NodeConfig(
            center=center,
            level=level,
            name=name,
            data_dir=base / center,
            database="sqlite",
            parent=parent,
            env=env,
        )
    )


def _check(node: Node) -> None:
    for svc in SERVICES:
        status = node.health(svc)
        if status != "SERVING":
            raise LaunchError(f"{svc} of {node.config.center} is {status}")
    with urllib.request.urlopen(node.gateway_url + "/", timeout=5) as resp:  # noqa: S310 - loopback
        if resp.status != 200:
            raise LaunchError(f"gateway of {node.config.center} answered {resp.status}")


def run_demo(*, base: Path, wait: bool) -> int:
    """Start both nodes, print their URLs and logins, wait for Ctrl-C, stop cleanly."""
    base = base.resolve()
    nodes: list[Node] = []
    try:
        city = _node(base, CITY)
        nodes.append(city)
        print("starting the city node (210200) ...", flush=True)
        city.start()
        district = _node(base, DISTRICT, parent=f"127.0.0.1:{city.interconnect_port}")
        nodes.append(district)
        print("starting the district node (210211) ...", flush=True)
        district.start()
        for node in nodes:
            _check(node)
    except (LaunchError, OSError) as exc:
        print(f"onestop demo: {exc}", file=sys.stderr)
        for node in reversed(nodes):
            node.stop()
        return 1
    print("\nonestop demo is running (demo data; nothing here is real):\n")
    for node in nodes:
        print(f"{node.config.name}")
        for url in node.urls():
            print(url)
        accounts = json.loads(Path(node.config.env["ONESTOP_DEMO_ACCOUNTS_FILE"]).read_text(encoding="utf-8"))
        for user, password in accounts.items():
            print(f"  login {user} / {password}")
        print(f"  gRPC intake {node.address('intake')}  approval {node.address('approval')}")
        print()
    print("every service's gRPC health check: SERVING", flush=True)
    try:
        if wait:
            stopped = False

            def handler(*_: object) -> None:
                nonlocal stopped
                stopped = True

            signal.signal(signal.SIGTERM, handler)
            signal.signal(signal.SIGINT, handler)
            print("Ctrl-C stops the demo.", flush=True)
            while not stopped:
                time.sleep(0.5)
    finally:
        for node in reversed(nodes):
            node.stop()
    return 0
