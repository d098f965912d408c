"""The special procedures of 行政许可法 Art. 45, whose time is not counted in a licensing period.

Routing's catalogue says which a matter allows; approval runs them on a task; supervision stops the clocks
while one runs. Their names as pages, timelines and notices show them: (zh-CN, English).
"""

from __future__ import annotations

NAMES: dict[str, tuple[str, str]] = {
    "hearing": ("听证", "hearing"),
    "expert_review": ("专家评审", "expert review"),
    "inspection": ("检验", "inspection"),
    "testing": ("检测", "testing"),
    "appraisal": ("鉴定", "appraisal"),
    "quarantine": ("检疫", "quarantine"),
    "tendering": ("招标", "tendering"),
    "auction": ("拍卖", "auction"),
}


def name(code: str, language: str) -> str:
    """A procedure's name in zh-CN or English (the code itself when unknown)."""
    zh, en = NAMES.get(code, (code, code))
    return en if language.startswith("en") else zh
