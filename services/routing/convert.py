"""Routing's protobuf views of the catalogue and the organisation."""

from __future__ import annotations

from onestop.routing.v1 import routing_pb2
from services.routing.catalogue import Matter
from services.routing.org import Organisation, Staff


def matter_message(matter: Matter, version: int) -> routing_pb2.Matter:
    """The public view of a matter in a catalogue version."""
    msg = routing_pb2.Matter(
        code=matter.code,
        version=version,
        name_zh=matter.name_zh,
        name_en=matter.name_en,
        category=str(matter.category),
        decision_level=str(matter.decision_level),
        statutory_limit_days=matter.statutory_limit_days,
        promised_limit_days=matter.promised_limit_days,
        on_the_spot=matter.on_the_spot,
        warning_threshold_days=matter.warning_threshold_days,
        deemed_approval_allowed=matter.deemed_approval_allowed,
        special_procedures=[str(p) for p in matter.special_procedures],
        legal_basis=matter.legal_basis,
        green_channel_eligible=matter.green_channel_eligible,
        preliminary_review_days=matter.preliminary_review_days or 0,
        description_zh=matter.description_zh,
        description_en=matter.description_en,
    )
    for step in matter.workflow:
        msg.workflow.add(
            department=step.department,
            group=step.group,
            prerequisites=list(step.prerequisites),
            lead=step.lead,
        )
    for m in matter.materials:
        msg.materials.add(
            code=m.code,
            name_zh=m.name_zh,
            name_en=m.name_en,
            mandatory=m.mandatory,
            form_template=m.form_template or "",
            accepted_types=list(m.accepted_types),
            max_bytes=m.max_bytes,
        )
    for f in matter.fees:
        msg.fees.add(
            code=f.code, name_zh=f.name_zh, name_en=f.name_en, amount=str(f.amount), kind=str(f.kind)
        )
    return msg


def centers_message(org: Organisation, parent: str) -> routing_pb2.ListCentersResponse:
    """Centers, all or the children of `parent`."""
    centers = org.children(parent) if parent else tuple(org.centers.values())
    return routing_pb2.ListCentersResponse(
        centers=[
            routing_pb2.Center(
                code=c.code, name_zh=c.name_zh, name_en=c.name_en, level=str(c.level), parent=c.parent or ""
            )
            for c in centers
        ]
    )


def staff_message(staff: Staff) -> routing_pb2.Staff:
    """A staff member with every role grant."""
    return routing_pb2.Staff(
        username=staff.username,
        display_name=staff.display_name,
        roles=[
            routing_pb2.RoleGrant(
                role=str(g.role),
                center=g.center,
                department=g.department or "",
                service_point=g.service_point or "",
            )
            for g in staff.roles
        ],
    )
