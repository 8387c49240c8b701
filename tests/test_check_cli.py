"""`scaffold check` as a user and CI run it: output formats, exit codes, ignore comments,
--select / --ignore."""

import json
from pathlib import Path

import pytest

from scaffold.cli import main

CASES = Path(__file__).parent / "check_cases"
# Rule IDs as data, outside the tests: these test the command line, not the rules
# (docs/rules.md lists a test whose body cites an ID as enforcing that rule).
STEP_ORDER, AMP, EVAL_STRATEGY = "R-STEP-ORDER", "R-AMP", "R-EVAL-STRATEGY"
MISSING_ZERO_GRAD = """\
def train(model, loader, optimizer):
    for batch in loader:
        loss = model(batch)
        loss.backward()
        optimizer.step(){comment}
"""
CLEAN = "print('hello')\n"


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def wrong(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(MISSING_ZERO_GRAD.format(comment=""))
    return path


def test_clean_file_exits_0(tmp_path: Path, capsys):
    (tmp_path / "ok.py").write_text(CLEAN)
    code, out, _ = run(capsys, str(tmp_path))
    assert code == 0
    assert "No problems in 1 file." in out


def test_finding_exits_1_with_rule_location_problem_and_fix(wrong: Path, capsys):
    code, out, _ = run(capsys, str(wrong))
    assert code == 1
    first, fix = out.splitlines()[:2]
    assert first.startswith(f"{wrong}:5:9: {STEP_ORDER} [missing-zero-grad] ")
    assert fix.strip().startswith("fix: call optimizer.zero_grad(")


def test_json_format_lists_findings(wrong: Path, capsys):
    code, out, _ = run(capsys, "--format", "json", str(wrong))
    data = json.loads(out)
    assert code == 1
    assert data["files"] == 1 and data["errors"] == []
    [finding] = data["findings"]
    assert finding["rule"] == STEP_ORDER
    assert (finding["path"], finding["line"]) == (str(wrong), 5)
    assert finding["fix"]


def test_sarif_format_is_sarif_2_1_0(wrong: Path, capsys):
    code, out, _ = run(capsys, "--format", "sarif", str(wrong))
    log = json.loads(out)
    assert code == 1
    assert log["version"] == "2.1.0" and "sarif-2.1.0" in log["$schema"]
    [run_] = log["runs"]
    rules = run_["tool"]["driver"]["rules"]
    [result] = run_["results"]
    assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == STEP_ORDER
    region = result["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 5, "startColumn": 9}
    assert run_["invocations"][0]["executionSuccessful"] is True


def test_ignore_comment_silences_its_rule_on_its_line(tmp_path: Path, capsys):
    path = tmp_path / "train.py"
    path.write_text(MISSING_ZERO_GRAD.format(comment=f"  # scaffold: ignore[{STEP_ORDER}]"))
    assert run(capsys, str(path))[0] == 0


def test_ignore_comment_for_another_rule_silences_nothing(tmp_path: Path, capsys):
    path = tmp_path / "train.py"
    path.write_text(MISSING_ZERO_GRAD.format(comment=f"  # scaffold: ignore[{AMP}]"))
    assert run(capsys, str(path))[0] == 1


def test_select_keeps_only_the_named_rules(capsys):
    code, out, _ = run(capsys, "--select", AMP, str(CASES / "missing-zero-grad"))
    assert code == 0
    code, out, _ = run(capsys, "--select", AMP, str(CASES / "deprecated-cuda-amp"))
    assert code == 1 and STEP_ORDER not in out


def test_ignore_drops_the_named_rules(wrong: Path, capsys):
    assert run(capsys, "--ignore", STEP_ORDER, str(wrong))[0] == 0
    assert run(capsys, "--ignore", "missing-zero-grad", str(wrong))[0] == 0


def test_unknown_rule_id_is_a_usage_error_with_a_suggestion(wrong: Path, capsys):
    code, out, err = run(capsys, "--select", STEP_ORDER.replace("ORDER", "ORDR"), str(wrong))
    assert code == 2
    assert err.strip() == (
        f"scaffold check: error: unknown rule ID 'R-STEP-ORDR'; did you mean {STEP_ORDER}?"
    )


def test_missing_path_is_a_usage_error(tmp_path: Path, capsys):
    code, _, err = run(capsys, str(tmp_path / "nope"))
    assert code == 2
    assert err.strip() == f"scaffold check: error: {tmp_path / 'nope'}: no such file or directory"


def test_syntax_error_is_reported_and_other_files_still_checked(wrong: Path, capsys):
    (wrong.parent / "broken.py").write_text("def f(:\n")
    code, out, err = run(capsys, str(wrong.parent))
    assert code == 2
    assert f"{wrong.parent / 'broken.py'}:1: cannot check: syntax error" in out
    assert STEP_ORDER in out
    assert "Traceback" not in out + err


def test_files_that_are_not_python_are_passed_over(tmp_path: Path, capsys):
    (tmp_path / "README.md").write_text("for batch in loader: optimizer.step()\n")
    assert run(capsys, str(tmp_path / "README.md"))[0] == 0


def test_list_shows_every_check_with_its_rule(capsys):
    code, out, _ = run(capsys, "--list")
    assert code == 0
    assert any(line.split()[:2] == [STEP_ORDER, "missing-zero-grad"] for line in out.splitlines())


def test_invalid_yaml_named_on_the_command_line_is_reported(tmp_path: Path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("training: [unclosed\n")
    code, out, _ = run(capsys, str(config))
    assert code == 2
    assert f"{config}:2: cannot check: invalid YAML" in out


def test_yaml_that_is_not_a_config_is_passed_over_in_a_directory(tmp_path: Path, capsys):
    (tmp_path / "chart.yaml").write_text("name: {{ .Values.name }}\n")  # a Helm template
    (tmp_path / "train.yaml").write_text("training:\n  output_dir: runs\n  max_steps: 10\n")
    assert run(capsys, str(tmp_path))[0] == 0


def test_a_training_config_is_checked(tmp_path: Path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("training:\n  output_dir: runs\n  evaluation_strategy: epoch\n")
    code, out, _ = run(capsys, str(tmp_path))
    assert code == 1
    assert f"{config}:3:3: {EVAL_STRATEGY} [config-removed-evaluation-strategy]" in out
