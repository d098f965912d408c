"""Where a case is decided: here, or above (forwarded to the parent, maybe after a preliminary review here).

A matter whose decision level is above this center's tier goes to the parent node when this node
has one. The center right below the deciding level (and the city, for province and nation matters,
R3) first runs its own preliminary review with the windows it has, within the matter's
`preliminary_review_days`; intake uploads the case once that review approves it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from services.routing.catalogue import Matter, PlannedTask, plan_tasks
from services.routing.org import Organisation, Tier

# The CaseForwarded.reason values (a contract with intake, documented in interconnect.proto's docs).
DECIDED_ABOVE = "decided_above"
AFTER_PRELIMINARY_REVIEW = "preliminary_review"


@dataclass(frozen=True)
class Placement:
    """The routing decision for one case."""

    forwarded: bool
    parent_center: str = ""
    preliminary: tuple[PlannedTask, ...] = ()

    @property
    def reason(self) -> str:
        """The CaseForwarded.reason for this placement."""
        return AFTER_PRELIMINARY_REVIEW if self.preliminary else DECIDED_ABOVE

    @property
    def forward_state(self) -> str:
        """What routing.GetRoute shows while the case is away."""
        if not self.forwarded:
            return ""
        return "preliminary_review" if self.preliminary else "forwarded"


def place(*, org: Organisation, center: str, matter: Matter, has_parent: bool) -> Placement:
    """Decide here, or forward to the parent (with the preliminary tasks this center runs first)."""
    here = org.centers.get(center)
    if here is None or not has_parent or here.parent is None:
        return Placement(forwarded=False)
    level: Tier = matter.decision_level
    if level.rank <= here.tier.rank:
        return Placement(forwarded=False)
    parent = org.centers.get(here.parent)
    preliminary: tuple[PlannedTask, ...] = ()
    reviews_here = here.tier is Tier.CITY or (parent is not None and parent.tier is level)
    if matter.preliminary_review_days and reviews_here:
        departments = {w.department for w in org.windows_at(center)}
        preliminary = tuple(
            replace(t, prerequisites=tuple(p for p in t.prerequisites if p in departments))
            for t in plan_tasks(matter)
            if t.department in departments
        )
    return Placement(forwarded=True, parent_center=here.parent, preliminary=preliminary)
