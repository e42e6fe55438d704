"""manage.py policy_lint: exit codes and the text, JSON and SARIF formats."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
CLEAN, EVERY = str(EXAMPLES / "clean.yaml"), str(EXAMPLES / "every-finding.yaml")


def run(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("policy_lint", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_a_clean_policy_exits_0_and_prints_compiler_style_lines():
    code, out, err = run(CLEAN)

    assert code == 0
    assert all(line.startswith(f"{CLEAN}:") and " info VGL040 coverage-gap: " in line for line in out.splitlines())
    assert err.strip().startswith("0 error(s), 0 warning(s)")


def test_errors_exit_1():
    code, out, _ = run(EVERY)

    assert code == 1
    assert f"{EVERY}:15:3: error VGL001 syntax: duplicate key 'description'" in out


def test_strict_fails_on_warnings_only_policies(tmp_path):
    warned = tmp_path / "warned.yaml"
    warned.write_text(Path(CLEAN).read_text().replace('ref: "Art. 73"', 'ref: "Art. 173"'))

    assert run(str(warned))[0] == 0
    assert run(str(warned), "--strict")[0] == 1
    assert run(CLEAN, "--strict")[0] == 0


def test_json_format_reports_every_file():
    code, out, _ = run(CLEAN, EVERY, "--format", "json")

    body = json.loads(out)
    assert code == 1
    assert body["ok"] is False
    assert [r["filename"] for r in body["reports"]] == [CLEAN, EVERY]
    assert body["counts"]["error"] == body["reports"][1]["counts"]["error"]


def test_sarif_format_to_an_output_file(tmp_path):
    target = tmp_path / "lint.sarif"

    code, out, _ = run(EVERY, "--format", "sarif", "--output", str(target))

    sarif = json.loads(target.read_text())
    assert code == 1
    assert out == ""
    assert sarif["version"] == "2.1.0"
    assert sarif["runs"][0]["artifacts"] == [{"location": {"uri": EVERY}}]
    assert {r["ruleId"] for r in sarif["runs"][0]["results"]} >= {"VGL001", "VGL030", "VGL041"}


def test_an_unreadable_file_is_exit_2(tmp_path):
    with pytest.raises(CommandError) as raised:
        run(str(tmp_path / "missing.yaml"))

    assert raised.value.returncode == 2
    assert "cannot read" in str(raised.value)


def test_a_non_utf8_file_is_exit_2(tmp_path):
    binary = tmp_path / "policy.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")

    with pytest.raises(CommandError) as raised:
        run(str(binary))

    assert raised.value.returncode == 2


def test_an_unknown_format_is_a_usage_error():
    with pytest.raises(CommandError):
        run(CLEAN, "--format", "xml")
