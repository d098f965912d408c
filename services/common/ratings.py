"""The bounds of an applicant's rating (好差评, GB/T 39734-2020), checked where a rating enters a node:
supervision's SubmitEvaluation and, for a case decided above, the parent's interconnect."""

from __future__ import annotations

from services.common.errors import InvalidArgument

MAX_TAGS, MAX_TAG_CHARS, MAX_TEXT_CHARS = 10, 32, 2000


def clean(tags: list[str], text: str) -> tuple[list[str], str]:
    """Tags without blanks and surrounding spaces; the text stripped."""
    return [t.strip() for t in tags if t.strip()], text.strip()


def validate(*, rating: int, tags: list[str], text: str) -> None:
    """INVALID_ARGUMENT, naming the field, for a rating outside 1..5 or tags or text over their limits."""
    if rating < 1 or rating > 5:
        raise InvalidArgument(
            "rating must be 1 (very dissatisfied) to 5 (very satisfied)",
            field="rating",
            zh="评价等级应为 1（非常不满意）至 5（非常满意）",
        )
    if len(tags) > MAX_TAGS or any(len(t) > MAX_TAG_CHARS for t in tags):
        raise InvalidArgument(
            f"at most {MAX_TAGS} tags of {MAX_TAG_CHARS} characters",
            field="tags",
            zh=f"评价标签最多 {MAX_TAGS} 个，每个不超过 {MAX_TAG_CHARS} 个字",
        )
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidArgument(
            f"text is limited to {MAX_TEXT_CHARS} characters",
            field="text",
            zh=f"评价内容不能超过 {MAX_TEXT_CHARS} 个字",
        )
