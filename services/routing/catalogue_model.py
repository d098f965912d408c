"""Matters of the catalogue (事项目录): frozen dataclasses, no I/O.

Workflow semantics (R4, R8, R11, R12): a step starts when every step of a lower group is approved
and every one of its prerequisites is approved.  Steps of the same group therefore start together
(parallel approval); a prerequisite may sit in the same group (it then delays just that step) or a
lower one, never a later one.  Exactly one step is the lead window, which receives the case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from services.routing.catalogue_fields import DataFileError
from services.routing.org_model import Tier

__all__ = [
    "CODE",
    "MATTER_CODE",
    "MAX_PRELIMINARY_REVIEW_DAYS",
    "MAX_UPLOAD_BYTES",
    "CatalogueError",
    "Category",
    "DecisionLevel",
    "Fee",
    "FeeKind",
    "Material",
    "Matter",
    "SpecialProcedure",
    "Step",
]

MATTER_CODE = re.compile(r"[A-Z][A-Z0-9]{0,15}(?:-[A-Z0-9]{1,15}){0,3}")
CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
# 行政许可法 Art. 43: a lower level's preliminary review takes at most 20 days.
MAX_PRELIMINARY_REVIEW_DAYS = 20

DecisionLevel = Tier
"""Where a matter is decided: village, township, district, city, province or nation."""


class CatalogueError(DataFileError):
    """A catalogue is invalid; the message names file, matter and field."""


class Category(StrEnum):
    """The five parallel-approval categories of R11, convenience matters (R21), or other."""

    BUSINESS_REGISTRATION = "business_registration"
    CAPITAL_CONSTRUCTION = "capital_construction"
    FOREIGN_INVESTMENT = "foreign_investment"
    REAL_ESTATE = "real_estate"
    TECHNICAL_RENOVATION = "technical_renovation"
    CONVENIENCE = "convenience"
    OTHER = "other"


class SpecialProcedure(StrEnum):
    """Procedures whose time is not counted on the clock (行政许可法 Art. 45)."""

    HEARING = "hearing"
    EXPERT_REVIEW = "expert_review"
    INSPECTION = "inspection"
    TESTING = "testing"
    APPRAISAL = "appraisal"
    QUARANTINE = "quarantine"
    TENDERING = "tendering"
    AUCTION = "auction"


class FeeKind(StrEnum):
    """Administrative fee, other charge, or fine (R20)."""

    ADMINISTRATIVE = "administrative"
    OTHER = "other"
    FINE = "fine"


@dataclass(frozen=True, slots=True)
class Step:
    """One department's step in a matter's workflow."""

    department: str
    group: int
    prerequisites: tuple[str, ...]
    lead: bool


@dataclass(frozen=True, slots=True)
class Material:
    """A document the applicant supplies."""

    code: str
    name_zh: str
    name_en: str
    mandatory: bool
    form_template: str | None
    accepted_types: tuple[str, ...]
    max_bytes: int


@dataclass(frozen=True, slots=True)
class Fee:
    """A fee, charge or fine, in yuan."""

    code: str
    name_zh: str
    name_en: str
    amount: Decimal
    kind: FeeKind


@dataclass(frozen=True, slots=True)
class Matter:
    """A catalogue item: what is decided where, by whom, within which limits."""

    code: str
    name_zh: str
    name_en: str
    category: Category
    decision_level: DecisionLevel
    workflow: tuple[Step, ...]
    statutory_limit_days: int
    promised_limit_days: int
    on_the_spot: bool
    warning_threshold_days: int
    deemed_approval_allowed: bool
    special_procedures: tuple[SpecialProcedure, ...]
    materials: tuple[Material, ...]
    fees: tuple[Fee, ...]
    legal_basis: str
    green_channel_eligible: bool
    preliminary_review_days: int | None
    description_zh: str = ""
    description_en: str = ""

    @property
    def departments(self) -> tuple[str, ...]:
        """The departments involved, in workflow order."""
        return tuple(step.department for step in self.workflow)

    @property
    def lead(self) -> Step:
        """The lead window's step."""
        return next(step for step in self.workflow if step.lead)

    @property
    def joint(self) -> bool:
        """Whether several departments decide (joint handling, 45-day ceiling)."""
        return len(self.workflow) > 1
