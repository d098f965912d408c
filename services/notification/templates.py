"""Rendering messages (title, SMS, body) and printable written notices from jinja2 templates."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import jinja2

from services.common import special_procedures
from services.common.clock import SHANGHAI
from services.notification.model import DEFAULT_LANGUAGE

PACKAGE_TEMPLATES = Path(__file__).resolve().parent / "templates"
MESSAGE_BLOCKS = ("title", "sms", "body")


class RenderError(Exception):
    """A template could not be rendered (missing, broken, or asking for a field it was not given)."""


class Directory(Protocol):
    """Human names of codes (departments, this center), in a language."""

    def department(self, code: str, language: str) -> str: ...

    def center(self, language: str) -> str: ...


@dataclass(frozen=True)
class StaticDirectory:
    """Names from configuration only: the center's name, departments shown by code."""

    center_zh: str
    center_en: str
    departments: dict[str, tuple[str, str]] | None = None

    def department(self, code: str, language: str) -> str:
        """The department's name, or its code when unknown."""
        names = (self.departments or {}).get(code)
        if not names:
            return code
        return names[1] if language == "en" else names[0]

    def center(self, language: str) -> str:
        """This center's name."""
        return self.center_en if language == "en" else self.center_zh


@dataclass(frozen=True)
class RenderedMessage:
    """One message, ready for any channel."""

    title: str
    sms: str
    body: str


def _instant(value: str) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(SHANGHAI)


@jinja2.pass_context
def _local_time(ctx: jinja2.runtime.Context, value: str) -> str:
    moment = _instant(value)
    if moment is None:
        return "—"
    if ctx.get("lang") == "en":
        return moment.strftime("%d %b %Y %H:%M")
    return f"{moment.year}年{moment.month}月{moment.day}日 {moment:%H:%M}"


@jinja2.pass_context
def _local_date(ctx: jinja2.runtime.Context, value: str) -> str:
    moment = _instant(value)
    if moment is None:
        return "—"
    if ctx.get("lang") == "en":
        return f"{moment.day} {moment:%B %Y}"
    return f"{moment.year}年{moment.month}月{moment.day}日"


class _Environment(jinja2.Environment):
    """Templates see the environment's globals as a plain dict taken when they are loaded (all are set
    before the first load): jinja's default, a ChainMap, is walked twice on every render."""

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


class Templates:
    """The template set: the package's own, optionally overlaid by a center's directory (R24)."""

    def __init__(self, *, directory: Directory, override_dir: str = "") -> None:
        loaders: list[jinja2.BaseLoader] = []
        if override_dir:
            loaders.append(jinja2.FileSystemLoader(override_dir))
        loaders.append(jinja2.FileSystemLoader(str(PACKAGE_TEMPLATES)))
        self._env = _Environment(
            loader=jinja2.ChoiceLoader(loaders),
            # Notices are HTML built from applicant and staff text: escape everything there.
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            # A center's own templates may be fixed while it runs (a dead letter is then retried), so
            # they are checked for changes on every use; the package's own change only with a release.
            auto_reload=bool(override_dir),
        )
        # Without reloading, which template answers a (folder, name, language) never changes.
        self._found: dict[tuple[str, str, str], tuple[jinja2.Template, str]] | None = (
            None if override_dir else {}
        )
        self._env.filters["local_time"] = _local_time
        self._env.filters["local_date"] = _local_date
        self._directory = directory

        @jinja2.pass_context
        def dept(ctx: jinja2.runtime.Context, code: str) -> str:
            return directory.department(code, str(ctx.get("lang", DEFAULT_LANGUAGE)))

        self._env.globals["dept"] = dept

        @jinja2.pass_context
        def procedure_name(ctx: jinja2.runtime.Context, code: str) -> str:
            return special_procedures.name(code, str(ctx.get("lang", DEFAULT_LANGUAGE)))

        self._env.globals["procedure_name"] = procedure_name

    def _template(self, folder: str, name: str, language: str) -> tuple[jinja2.Template, str]:
        if self._found is None:
            return self._find(folder, name, language)
        key = (folder, name, language)
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = self._find(folder, name, language)
        return found

    def _find(self, folder: str, name: str, language: str) -> tuple[jinja2.Template, str]:
        try:
            return self._env.get_template(f"{folder}/{language}/{name}"), language
        except jinja2.TemplateNotFound:
            if language == DEFAULT_LANGUAGE:
                raise
            # Staff messages exist in zh-CN only; dates and names then follow the text's language.
            return self._env.get_template(f"{folder}/{DEFAULT_LANGUAGE}/{name}"), DEFAULT_LANGUAGE

    def _vars(self, context: dict[str, Any], language: str) -> dict[str, Any]:
        return {"center_name": self._directory.center(language), **context, "lang": language}

    def message(self, *, kind: str, language: str, context: dict[str, Any]) -> RenderedMessage:
        """Title, SMS text and body of message `kind`; RenderError when the template fails."""
        try:
            template, used = self._template("messages", f"{kind}.txt", language)
            ctx = template.new_context(self._vars(context, used))
            # A staff message has no SMS block: staff are told in their inbox only.
            parts = {
                b: "".join(template.blocks[b](ctx)).strip() if b in template.blocks else ""
                for b in MESSAGE_BLOCKS
            }
        except jinja2.TemplateError as exc:
            raise RenderError(f"template error: {type(exc).__name__}: {exc}") from exc
        return RenderedMessage(**parts)

    def notice(self, *, notice_kind: str, language: str, context: dict[str, Any]) -> str:
        """The printable HTML page of a written notice; RenderError when the template fails."""
        try:
            template, used = self._template("notices", f"{notice_kind}.html", language)
            return template.render(self._vars(context, used))
        except jinja2.TemplateError as exc:
            raise RenderError(f"template error: {type(exc).__name__}: {exc}") from exc
