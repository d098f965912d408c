"""The `onestop` command: run services, nodes and the demo; migrate; calendar; seals."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from services.cli import audit_cmd, calendar_cmd, catalogue_cmd, certs_cmd, outbox_cmd, seal_cmd
from services.common.ports import SERVICES


def _service(args: argparse.Namespace) -> int:
    if args.name == "gateway":
        from gateway.__main__ import main as gateway_main

        gateway_main()
        return 0
    from services.common.service_main import main as service_main

    service_main(args.name)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from services.common.migrate import upgrade

    url = os.environ.get("ONESTOP_DATABASE_URL", "")
    if not url:
        print("onestop migrate: ONESTOP_DATABASE_URL is required", file=sys.stderr)
        return 2
    for name in SERVICES if args.all else [args.service]:
        upgrade(service=name, database_url=url)
        print(f"migrated {name}")
    return 0


def _wait_forever(stop_msg: str) -> None:
    stopped = False

    def handler(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    print(stop_msg, flush=True)
    while not stopped:
        time.sleep(0.5)


def _node_up(args: argparse.Namespace) -> int:
    from services.cli.node import LaunchError, Node, NodeConfig

    try:
        node = Node(NodeConfig.from_file(Path(args.config)))
        node.start()
    except LaunchError as exc:
        print(f"onestop node up: {exc}", file=sys.stderr)
        return 1
    try:
        for url in node.urls():
            print(url, flush=True)
        _wait_forever(f"node {node.config.center} is up; Ctrl-C stops it")
    finally:
        node.stop()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from services.cli.demo import run_demo

    return run_demo(base=Path(args.dir), wait=not args.no_wait)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(prog="onestop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("service", help="run one service process")
    p.add_argument("name", choices=[*SERVICES, "gateway"])
    p.set_defaults(func=_service)

    p = sub.add_parser("migrate", help="run database migrations (ONESTOP_DATABASE_URL)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--all", action="store_true")
    group.add_argument("--service", choices=SERVICES)
    p.set_defaults(func=_migrate)

    node = sub.add_parser("node", help="run a node (one center) on this machine")
    node_sub = node.add_subparsers(dest="node_command", required=True)
    p = node_sub.add_parser("up", help="start a node's processes from a TOML config and wait")
    p.add_argument("--config", required=True)
    p.set_defaults(func=_node_up)

    p = sub.add_parser("demo", help="a city node and a district node with demo data")
    p.add_argument("--dir", default=".onestop/demo", help="where the demo keeps its data")
    p.add_argument("--no-wait", action="store_true", help="start, print, check, then stop (for tests)")
    p.set_defaults(func=_demo)

    calendar_cmd.register(sub)
    catalogue_cmd.register(sub)
    certs_cmd.register(sub)
    seal_cmd.register(sub)
    audit_cmd.register(sub)
    outbox_cmd.register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `onestop` console script."""
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
