"""Every gRPC method of a running node, fed random and malformed messages (hypothesis).

No crash, no INTERNAL/UNKNOWN status, a clear reason each time, and the node still serves afterwards.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onestop.approval.v1 import approval_pb2
from onestop.intake.v1 import intake_pb2
from onestop.notification.v1 import notification_pb2
from onestop.routing.v1 import routing_pb2
from onestop.supervision.v1 import supervision_pb2
from services.common.ports import SERVICES

pytestmark = pytest.mark.e2e
DESCRIPTORS = {
    "intake": intake_pb2.DESCRIPTOR.services_by_name["IntakeService"],
    "routing": routing_pb2.DESCRIPTOR.services_by_name["RoutingService"],
    "approval": approval_pb2.DESCRIPTOR.services_by_name["ApprovalService"],
    "supervision": supervision_pb2.DESCRIPTOR.services_by_name["SupervisionService"],
    "notification": notification_pb2.DESCRIPTOR.services_by_name["NotificationService"],
}
# Methods whose valid calls change shared state in ways that would disturb the others (the catalogue
# import is fuzzed with its content; the tick only moves clocks).
ACCEPTABLE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
}
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "210200",
            "TR-001",
            "PLAN",
            "x" * 5000,
            "../../etc/passwd",
            "'; DROP TABLE intake_cases; --",
            "\x00\ud7ff",
        ]
    ),
)
SCALARS = {
    FieldDescriptor.TYPE_STRING: TEXT,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=True),
    FieldDescriptor.TYPE_ENUM: st.integers(-3, 40),
}


def message_strategy(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[bytes]:
    """Random but well-typed messages (unknown enum values included), serialized."""
    cls = message_factory.GetMessageClass(descriptor)

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        msg = cls()
        for field in descriptor.fields:
            if not draw(st.booleans()):
                continue
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                if (
                    depth >= 2
                    or field.message_type.full_name.startswith("google.protobuf.")
                    and field.message_type.name != "Timestamp"
                ):
                    continue
                if field.message_type.GetOptions().map_entry:
                    getattr(msg, field.name)[draw(st.text(max_size=8))] = draw(st.text(max_size=8))
                    continue
                sub = draw(message_strategy(field.message_type, depth + 1))
                target = getattr(msg, field.name).add() if field.is_repeated else getattr(msg, field.name)
                target.MergeFromString(sub)
                continue
            strategy = SCALARS.get(field.type)
            if strategy is None:
                continue
            value = draw(strategy)
            try:
                if field.is_repeated:
                    getattr(msg, field.name).append(value)
                else:
                    setattr(msg, field.name, value)
            except (ValueError, TypeError):
                continue
        return msg.SerializeToString()

    return build()


GARBAGE = st.one_of(st.binary(max_size=256), st.just(b"\x0a\xff\xff\xff\xff\x0f"), st.just(b"\x12\x05ab"))


LIVE_WATCHES = ("WatchCase",)  # a valid watch streams until the caller leaves: not a fuzzing target


def _request_methods(service: str) -> list[MethodDescriptor]:
    """Methods taking one request: unary, and server-streaming ones that end (DownloadDocument)."""
    return [
        m
        for m in DESCRIPTORS[service].methods
        if not m.client_streaming and m.name not in ("Tick", *LIVE_WATCHES)
    ]


@pytest.fixture(scope="module")
def node(module_node_factory):
    return module_node_factory()


@pytest.mark.parametrize("service", SERVICES)
def test_every_method_answers_random_and_malformed_input_with_a_clear_status(node, service: str) -> None:
    channel = grpc.insecure_channel(node.address(service))
    methods = _request_methods(service)
    assert methods
    failures: list[str] = []

    def fuzz_method(method: MethodDescriptor) -> None:
        path = f"/{DESCRIPTORS[service].full_name}/{method.name}"
        if method.server_streaming:
            stream = channel.unary_stream(
                path, request_serializer=lambda b: b, response_deserializer=lambda b: b
            )

            def call(payload: bytes, timeout: float) -> object:
                return list(stream(payload, timeout=timeout))

        else:
            call = channel.unary_unary(
                path, request_serializer=lambda b: b, response_deserializer=lambda b: b
            )

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(payload=st.one_of(message_strategy(method.input_type), GARBAGE))
        def fuzz(payload: bytes) -> None:
            try:
                call(payload, timeout=10)
            except grpc.RpcError as exc:
                if exc.code() not in ACCEPTABLE or not exc.details():
                    failures.append(
                        f"{method.full_name}: {exc.code().name} {exc.details()!r} for {payload[:60]!r}"
                    )

        fuzz()

    for method in methods:
        fuzz_method(method)
    channel.close()
    assert failures == []
    assert node.health(service) == "SERVING"
