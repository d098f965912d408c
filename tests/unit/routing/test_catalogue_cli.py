"""`onestop catalogue validate`: an operator checks a file before importing it."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli.main import main

DATA = Path(__file__).resolve().parents[3] / "services" / "routing" / "data"


def _run(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return int(done.value.code or 0)


def test_the_demo_catalogue_validates_against_the_demo_organisation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        _run("catalogue", "validate", str(DATA / "demo_catalogue.yaml"), "--org", str(DATA / "demo_org.yaml"))
        == 0
    )
    assert "version 1, 18 matters, valid" in capsys.readouterr().out


def test_a_broken_file_is_named_with_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "next.yaml"
    bad.write_text("version: 2\nmatters: [\n", encoding="utf-8")
    assert _run("catalogue", "validate", str(bad)) == 1
    err = capsys.readouterr().err
    assert "next.yaml" in err and "line" in err


def test_a_workflow_naming_an_unknown_department_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (DATA / "demo_catalogue.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "typo.yaml"
    bad.write_text(
        text.replace("{department: FIRE, group: 1}", "{department: FIER, group: 1}", 1), encoding="utf-8"
    )
    assert _run("catalogue", "validate", str(bad), "--org", str(DATA / "demo_org.yaml")) == 1
    assert "FIER" in capsys.readouterr().err
