"""zh-CN first, English second: the visitor's choice lives in a cookie."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

LANGUAGES = ("zh-CN", "en")


def language_of(request: web.Request) -> str:
    """The visitor's language: ?lang=, then the cookie, then zh-CN."""
    lang = request.query.get("lang") or request.cookies.get("lang") or "zh-CN"
    return lang if lang in LANGUAGES else "zh-CN"


def translator(lang: str) -> Callable[[str, str], str]:
    """t(zh, en) picks the visitor's language."""

    def t(zh: str, en: str) -> str:
        return en if lang == "en" else zh

    return t
