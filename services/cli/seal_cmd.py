"""`onestop seal verify`: check a sealed decision with a center's public key."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from onestop.approval.v1 import approval_pb2, approval_pb2_grpc
from onestop.common.v1 import common_pb2
from services.common.seal import load_public_key, verify


def _load_sealed(path: Path) -> common_pb2.SealedDecision:
    data = path.read_bytes()
    sealed = common_pb2.SealedDecision()
    if data.lstrip().startswith(b"{"):
        json_format.Parse(data.decode("utf-8"), sealed)
    else:
        sealed.ParseFromString(data)
    return sealed


def _verify(args: argparse.Namespace) -> int:
    if not (args.node and args.case_number) and not (args.decision and args.public_key):
        print(
            "onestop seal verify: give --decision and --public-key, or --node and --case-number",
            file=sys.stderr,
        )
        return 2
    try:
        if args.node:
            with grpc.insecure_channel(args.node) as channel:
                stub = approval_pb2_grpc.ApprovalServiceStub(channel)
                sealed = stub.GetCaseDecision(
                    approval_pb2.GetCaseDecisionRequest(case_number=args.case_number), timeout=10
                )
                pem = stub.GetSealKey(approval_pb2.GetSealKeyRequest(), timeout=10).public_key_pem.encode()
        else:
            sealed = _load_sealed(Path(args.decision))
            pem = Path(args.public_key).read_bytes()
        if args.public_key and args.node:
            pem = Path(args.public_key).read_bytes()  # trust the key you hold, not the node's answer
        valid, reason = verify(sealed, load_public_key(pem))
    except (OSError, ValueError, grpc.RpcError) as exc:
        print(f"onestop seal verify: {exc}", file=sys.stderr)
        return 2
    d = sealed.decision
    print(
        f"case {d.case_number} task {d.task_id or '-'} outcome {common_pb2.Outcome.Name(d.outcome)}: {reason}"
    )
    return 0 if valid else 1


def register(subparsers: Any) -> None:
    """Add `seal verify` to the command line."""
    parser = subparsers.add_parser("seal", help="verify sealed decisions")
    sub = parser.add_subparsers(dest="seal_command", required=True)
    p = sub.add_parser("verify", help="verify a sealed decision (file or fetched from a node)")
    p.add_argument("--decision", help="a SealedDecision file (binary protobuf or JSON)")
    p.add_argument("--public-key", help="the center's public key (PEM)")
    p.add_argument("--node", help="host:port of a node's approval service, with --case-number")
    p.add_argument("--case-number")
    p.set_defaults(func=_verify)
