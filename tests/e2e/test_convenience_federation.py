"""A household-registration matter two levels up and back (R18–R20): village service point > town > district.

A village agent takes CV-006 (decided by the district's public security bureau) at Yingchengzi Village's
service point; the town node (210211101) receives it, its liaison assigns a full-process agent, and the
town uploads it over mutual TLS to the Ganjingzi district node (210211). PSB there asks for a missing
permit; the notice comes down to the town, the carrying agent answers it for the resident, the answer goes
back up and PSB approves. The sealed result comes back down, the town's fee collector takes the identity-card
fee with a receipt, and the agent delivers the result at the service point with the resident's
confirmation. The nodes are processes, built like tests/e2e/test_federation.py builds its tree.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import convenience_pb2 as pb
from onestop.intake.v1 import convenience_pb2_grpc, intake_pb2
from onestop.routing.v1 import routing_pb2
from services.cli.main import build_parser
from services.common.events import timestamp
from tests.e2e.test_federation import DISTRICT, TOWNSHIP, Tree, parent_case
from tests.harness import NodeClients, pg_reachable, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
CS = common_pb2
VILLAGE_POINT = "210211101201"  # 营城子村便民服务点, a service point of the town's node


@pytest.fixture(scope="module")
def tree() -> Iterator[Tree]:
    """The Ganjingzi district node and its Yingchengzi town node, linked by mutual TLS."""
    if not pg_reachable():
        pytest.skip("PostgreSQL not reachable")
    base = Path(tempfile.mkdtemp(prefix="onestop-conv-fed-"))
    t = Tree(base=base, ca_dir=base / "ca")
    args = build_parser().parse_args(["certs", "init-ca", "--dir", str(t.ca_dir)])
    assert args.func(args) == 0
    try:
        for center in (DISTRICT, TOWNSHIP):
            t.start(center)
        yield t
    finally:
        t.stop()  # also removes the files


def town_staff(username: str, role: str) -> CS.Actor:
    """A Yingchengzi staff member as the town's gateway vouches for them."""
    return CS.Actor(username=username, display_name=username, role=role, center=TOWNSHIP)


def household_documents(town: NodeClients) -> list[CS.Document]:
    """The register and the ID photograph (a JPEG, as the checklist demands)."""
    photo = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + uuid.uuid4().bytes + b"\xff\xd9"
    return [
        town.upload("HOUSEHOLD"),
        town.upload("PHOTO", photo, content_type="image/jpeg", filename="photo.jpg"),
    ]


def test_a_household_registration_goes_from_a_village_point_up_to_the_district_and_back(tree: Tree) -> None:
    town, district = tree.clients[TOWNSHIP], tree.clients[DISTRICT]
    conv = convenience_pb2_grpc.ConvenienceServiceStub(
        grpc.insecure_channel(tree.nodes[TOWNSHIP].address("intake"))
    )
    matter = town.routing.GetMatter(routing_pb2.GetMatterRequest(code="CV-006"), timeout=5)
    assert matter.decision_level == "district"
    agent1, agent2 = town_staff("agent1", "agent"), town_staff("agent2", "agent")
    liaison1 = town_staff("liaison1", "liaison_officer")
    resident = CS.Applicant(kind=CS.APPLICANT_KIND_PERSON, name="孙小梅", phone="13900003333")

    # Level 1: the village agent takes the matter at the service point and hands it to the town.
    taken = conv.TakeMatter(
        pb.TakeMatterRequest(
            service_point=VILLAGE_POINT,
            agent=agent1,
            resident=resident,
            matter_code="CV-006",
            documents=household_documents(town),
            title="孙小梅 户口登记及身份证申领",
        ),
        timeout=10,
    )
    handed = conv.HandOver(pb.HandOverRequest(agency_id=taken.agency_id, received_by=liaison1), timeout=10)
    assert not handed.supplement, [i.material_code for i in handed.supplement]
    number, case_id = handed.case.case_number, handed.case.case_id
    assert number.startswith(f"{TOWNSHIP}-") and handed.agency.received_by.username == "liaison1"
    assigned = conv.AssignAgent(
        pb.AssignAgentRequest(case_number=number, agent=agent2, by=liaison1), timeout=10
    )
    assert assigned.full_process_agent.username == "agent2" and assigned.agent.username == "agent1"

    # Level 2: the town is no decider of CV-006, so it uploads the case to the district.
    town.wait_case(number, CS.CASE_STATUS_FORWARDED, timeout=30)
    up = parent_case(district, case_id)
    assert (up.origin_center, up.channel, up.applicant.name) == (TOWNSHIP, CS.CHANNEL_UPLOAD, "孙小梅")
    assert {d.material_code for d in up.documents} == {"HOUSEHOLD", "PHOTO"}
    (carried,) = conv.ListAgentCases(pb.ListAgentCasesRequest(agent="agent2"), timeout=5).cases
    assert carried.case.case_number == number and carried.case.status == CS.CASE_STATUS_FORWARDED
    refused = pb.RecordDeliveryRequest(
        case_number=number,
        method="handed_over",
        receiver_name="孙小梅",
        by=agent2,
        confirmed_at=timestamp(datetime.now(UTC)),
    )
    with pytest.raises(grpc.RpcError) as info:  # nothing to deliver while the district decides
        conv.RecordDelivery(refused, timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # The district's public security bureau asks for the permit to move in; the notice comes down to the
    # town, where the carrying agent answers it for the resident, and the answer goes back up.
    (task,) = district.wait_tasks(up.case_number, timeout=30)
    assert task.department == "PSB"
    item = CS.SupplementItem(material_code="MOVE-IN", reason="迁入地址与户口簿不一致,请补交准予迁入证明")
    district.decide(task, approval_pb2.VERDICT_REQUEST_SUPPLEMENT, items=[item])
    asked = town.wait_case(number, CS.CASE_STATUS_SUPPLEMENT_REQUESTED, timeout=30)
    assert [i.material_code for i in asked.open_supplement] == ["MOVE-IN"]
    town.intake.SupplementCase(
        intake_pb2.SupplementCaseRequest(case_id=case_id, documents=[town.upload("MOVE-IN")], by=agent2),
        timeout=10,
    )
    (again,) = district.wait_tasks(up.case_number, timeout=30)
    assert "MOVE-IN" in {d.material_code for d in district.case(up.case_number).documents}
    district.decide(again)
    sealed = district.approval.GetCaseDecision(
        approval_pb2.GetCaseDecisionRequest(case_number=up.case_number), timeout=5
    )
    assert sealed.decision.center == DISTRICT
    done = town.wait_case(number, CS.CASE_STATUS_CONCLUDED, timeout=40)
    assert done.outcome == CS.OUTCOME_APPROVED
    trail = town.timeline(number)
    assert trail.index("case_uploaded") < trail.index("parent_result_received")
    assert trail.count("parent_result_received") == 1 and "case_supplemented" in trail

    # Back at the town: the identity-card fee is collected for the case, with its receipt.
    fee = conv.CollectFee(
        pb.CollectFeeRequest(
            case_number=number,
            fee_code="ID-CARD",
            fee_kind="administrative",
            amount="20.00",
            payer="孙小梅",
            method="cash",
            collector=town_staff("fee1", "fee_collector"),
        ),
        timeout=10,
    )
    assert fee.receipt_number.startswith(f"{TOWNSHIP}-") and fee.matter_code == "CV-006"

    # Back at the village: the agent hands the result over and the resident confirms.
    waiting = {u.case_number: u for u in conv.ListUndelivered(pb.ListUndeliveredRequest(), timeout=5).cases}
    assert waiting[number].full_process_agent == "agent2"
    delivered = conv.RecordDelivery(
        pb.RecordDeliveryRequest(
            case_number=number,
            method="handed_over",
            receiver_name="孙小梅",
            by=agent2,
            confirmed_at=timestamp(datetime.now(UTC)),
            note=f"在{VILLAGE_POINT}服务点当面交付",
        ),
        timeout=10,
    )
    assert delivered.receiver_name == "孙小梅" and delivered.by.username == "agent2"
    undelivered = conv.ListUndelivered(pb.ListUndeliveredRequest(), timeout=5).cases
    assert number not in {u.case_number for u in undelivered}
    wait_for(lambda: "case_delivered" in town.timeline(number), what="the delivery on the town's timeline")
