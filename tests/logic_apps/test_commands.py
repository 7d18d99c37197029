"""`demobank workflows validate|list`: the console script's output and exit codes."""

from __future__ import annotations

import json

import pytest

from demobank.cli import main
from tests.logic_apps.test_definition import ONBOARDING


def test_validate_prints_each_problem_and_exits_1_then_0_once_fixed(tmp_path, capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SENDGRID_PROD", raising=False)
    broken = ONBOARDING.replace("{{ inputs.email }}", "{{ inputs.mail }}", 1).replace(
        "type: send_email", "type: send_email\n    connection: sendgrid_prod")
    (tmp_path / "onboarding.yaml").write_text(broken)
    assert main(["workflows", "validate", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert f"{tmp_path / 'onboarding.yaml'}:13:17: steps[0].connection: no connection 'sendgrid_prod'" in out
    assert f"{tmp_path / 'onboarding.yaml'}:14:9: steps[0].to: inputs.mail: no input 'mail'" in out
    assert "1 definition(s): 0 valid, 1 with 2 problem(s)" in err

    monkeypatch.setenv("AIRFLOW_CONN_SENDGRID_PROD", '{"conn_type": "sendgrid"}')
    (tmp_path / "onboarding.yaml").write_text(broken.replace("inputs.mail", "inputs.email"))
    assert main(["workflows", "validate", str(tmp_path / "onboarding.yaml")]) == 0
    assert "1 definition(s): 1 valid, 0 with 0 problem(s)" in capsys.readouterr().out


def test_list_and_an_empty_folder(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "onboarding.yaml").write_text(ONBOARDING)
    (tmp_path / "broken.yml").write_text("name: [")
    assert main(["workflows", "list", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "customer_onboarding\tmanual\t3 step(s)\tlogic_app__customer_onboarding" in out
    assert "broken.yml: not valid (1 problem(s)" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["workflows", "validate", str(empty)]) == 1
    assert "no definitions (*.yaml)" in capsys.readouterr().err


@pytest.mark.parametrize("trigger", ["manual", "schedule", "event"])
def test_new_writes_a_definition_that_validates_and_renders(trigger: str, tmp_path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workflows", "new", f"my_{trigger}", "--trigger", trigger, "--dir", str(tmp_path)]) == 0
    path = tmp_path / f"my_{trigger}.yaml"
    assert path.read_text().startswith("# yaml-language-server: $schema=")
    assert main(["workflows", "validate", str(path)]) == 0
    assert main(["workflows", "new", f"my_{trigger}", "--trigger", trigger, "--dir", str(tmp_path)]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["workflows", "render", f"my_{trigger}", "--path", str(tmp_path), "--format", "json"]) == 0
    shape = json.loads(capsys.readouterr().out)
    assert shape["dag_id"] == f"logic_app__my_{trigger}" and shape["trigger"] == trigger and shape["tasks"]


def test_render_shows_tasks_and_edges_with_their_statuses(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "onboarding.yaml").write_text(ONBOARDING)
    assert main(["workflows", "render", "customer_onboarding", "--path", str(tmp_path), "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    assert '"welcome" -> "verify";' in dot and '"verify" -> "announce" [label="succeeded|failed"];' in dot
    assert main(["workflows", "render", "customer_onboarding", "--path", str(tmp_path)]) == 0
    assert ("announce  publish_event  after welcome (succeeded|failed), verify (succeeded|failed)"
            in capsys.readouterr().out)
    assert main(["workflows", "render", "nobody", "--path", str(tmp_path)]) == 1
    assert "no valid definition named 'nobody'" in capsys.readouterr().err
    assert main(["workflows", "new", "Bad-Name", "--trigger", "manual", "--dir", str(tmp_path)]) == 1
    assert "is not a workflow name" in capsys.readouterr().err


def test_dry_run_prints_what_each_step_would_send_masked_and_exits_1_when_a_step_fails(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "onboarding.yaml").write_text(ONBOARDING)
    code = main(["workflows", "dry-run", "customer_onboarding", "--path", str(tmp_path),
                 "--input", "email=ada@example.com", "--input", "phone=+15005550006"])
    out = capsys.readouterr().out
    assert "dry run of customer_onboarding (DAG logic_app__customer_onboarding): nothing is sent" in out
    assert '  welcome (send_email): succeeded\n      would send email: {"connection": "sendgrid_default", "to": ' \
           '["a***@example.com"]' in out
    assert "+15005550006" not in out and "ada@example.com" not in out.split("would send email")[1].split(",")[1]
    assert "  announce (publish_event): failed: EventValidationError" in out  # customer.created has no e-mail
    assert code == 1
    assert main(["workflows", "dry-run", "customer_onboarding", "--path", str(tmp_path), "--input", "email"]) == 1
    assert "--input 'email' is not key=value" in capsys.readouterr().err
