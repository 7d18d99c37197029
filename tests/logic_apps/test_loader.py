"""The loader through Airflow's own DagBag (the DAG processor's importer): every definition becomes a DAG with the
steps, edges, trigger rules and Params its file says; a broken definition is an import error of its own file, with
its line and field, and hides no other workflow."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from demobank.logic_apps.definition import PROJECT_DIR

LOADER = PROJECT_DIR / "dags" / "logic_apps_loader.py"
EXAMPLES = PROJECT_DIR / "dags" / "logic_apps"


@pytest.fixture
def dags_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGs folder holding the loader and a copy of the examples; the suite's DB without deployed versions."""
    folder = tmp_path / "dags"
    (folder / "logic_apps").mkdir(parents=True)
    shutil.copy(LOADER, folder / LOADER.name)
    for example in EXAMPLES.glob("*.yaml"):
        shutil.copy(example, folder / "logic_apps" / example.name)
    monkeypatch.setenv("DEMOBANK_DB_URL", f"sqlite:///{tmp_path / 'suite.db'}")
    monkeypatch.delenv("DEMOBANK_LOGIC_APPS_DIR", raising=False)
    from demobank.db.migrate import upgrade

    upgrade(f"sqlite:///{tmp_path / 'suite.db'}")
    return folder


def bag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder / LOADER.name), bundle_path=folder)


def test_every_example_becomes_a_dag_with_its_steps_edges_and_rules(dags_folder: Path) -> None:
    loaded = bag(dags_folder)
    assert loaded.import_errors == {}
    assert set(loaded.dags) == {"logic_app__transaction_alert", "logic_app__customer_onboarding",
                                "logic_app__daily_digest"}

    alert = loaded.dags["logic_app__transaction_alert"]
    assert type(alert.timetable).__name__ == "NullTimetable"  # started by its event target, never scheduled
    assert {t.task_id: sorted(t.upstream_task_ids) for t in alert.tasks} == {
        "score": [], "amount": [], "sms": ["amount"], "email": ["amount"], "risky": ["score"], "flag": ["risky"]}
    assert type(alert.get_task("sms")).__name__ == "LogicAppSmsOperator"
    assert alert.get_task("sms").pool == "connect_sms" and alert.get_task("sms").retries == 2
    assert alert.get_task("risky").if_true == ["flag"]
    assert "logic-app" in alert.tags and "Not deployed" in alert.doc_md

    digest = loaded.dags["logic_app__daily_digest"]
    assert digest.timetable.expression == "0 6 * * *"
    each = digest.get_task("notify_each")
    assert type(each).__name__ == "MappedOperator" and sorted(each.upstream_task_ids) == ["notify"]
    assert digest.get_task("notify").outputs == {"changed_customers": "changed_customers"}

    onboarding = loaded.dags["logic_app__customer_onboarding"]
    params = onboarding.params
    assert set(params) == {"customer_id", "first_name", "email", "phone", "segment", "country", "channel"}
    assert params.get_param("segment").value == "retail"
    assert params.get_param("customer_id").schema["pattern"] == "^CUST-[0-9A-Z]{5,20}$"
    import copy

    with pytest.raises(Exception, match="customer_id"):  # a required input without a value: refused
        copy.deepcopy(params).validate()
    assert onboarding.get_task("announce").trigger_rule == "all_success"
    assert sorted(onboarding.get_task("announce").upstream_task_ids) == ["verify_phone", "welcome"]


def test_run_after_statuses_become_trigger_rules_and_a_condition_keeps_its_other_children(dags_folder: Path) -> None:
    (dags_folder / "logic_apps" / "rules.yaml").write_text(textwrap.dedent("""\
        name: rules
        description: d
        owner: o
        trigger: {type: manual}
        steps:
          - {id: check, type: condition, expression: "1 > 0", if_true: [yes_step], if_false: [no_step]}
          - {id: yes_step, type: send_sms, to: "+15005550006", body: "yes"}
          - {id: no_step, type: send_sms, to: "+15005550006", body: "no", run_after: []}
          - {id: audit, type: function, function: format_amount, arguments: {amount: 1}, run_after: [check]}
          - {id: cleanup, type: function, function: format_amount, arguments: {amount: 1},
             run_after: {yes_step: [succeeded, failed, skipped], no_step: [succeeded, failed, skipped]}}
          - {id: on_failure, type: function, function: format_amount, arguments: {amount: 1},
             run_after: {yes_step: [failed]}}
        """))
    dag = bag(dags_folder).dags["logic_app__rules"]
    rules = {task.task_id: task.trigger_rule for task in dag.tasks}
    assert rules["cleanup"] == "all_done" and rules["on_failure"] == "all_failed" and rules["audit"] == "all_success"
    check = dag.get_task("check")
    assert (check.if_true, check.if_false, check.always) == (["yes_step"], ["no_step"], ["audit"])


def test_a_broken_definition_is_an_import_error_of_its_own_file_and_hides_no_other(dags_folder: Path) -> None:
    broken = dags_folder / "logic_apps" / "customer_onboarding.yaml"
    broken.write_text(broken.read_text().replace("type: send_sms", "type: send_sms\n    bodyy: typo", 1)
                      .replace("function: risk_score", "function: risk_scor"))
    (dags_folder / "logic_apps" / "unknown_function.yaml").write_text(textwrap.dedent("""\
        name: unknown_function
        description: d
        owner: o
        trigger: {type: manual}
        steps:
          - {id: f, type: function, function: no_such_function}
        """))
    loaded = bag(dags_folder)
    assert set(loaded.dags) == {"logic_app__transaction_alert", "logic_app__daily_digest"}
    errors = loaded.import_errors
    assert set(errors) == {"logic_apps/customer_onboarding.yaml", "logic_apps/unknown_function.yaml"}
    assert "customer_onboarding.yaml:" in errors["logic_apps/customer_onboarding.yaml"]
    assert ": steps[1].bodyy: unknown field" in errors["logic_apps/customer_onboarding.yaml"]
    assert ("unknown_function.yaml:6:39: steps[0].function: no function 'no_such_function' is registered"
            in errors["logic_apps/unknown_function.yaml"])


def test_two_definitions_with_one_name_keep_the_first(dags_folder: Path) -> None:
    copy = dags_folder / "logic_apps" / "z_copy.yaml"
    copy.write_text((dags_folder / "logic_apps" / "daily_digest.yaml").read_text())
    loaded = bag(dags_folder)
    assert "logic_app__daily_digest" in loaded.dags
    assert "workflow 'daily_digest' is also defined in" in loaded.import_errors["logic_apps/z_copy.yaml"]


def test_a_deployed_version_is_shown_and_a_changed_file_says_so(dags_folder: Path) -> None:
    from demobank.db.engine import get_engine
    from demobank.logic_apps.definition import load_definition
    from demobank.logic_apps.versions import deploy

    path = dags_folder / "logic_apps" / "daily_digest.yaml"
    engine = get_engine()
    deploy(engine, load_definition(path), path.read_text(), author="alice")
    assert "**Deployed version 1**, by alice" in bag(dags_folder).dags["logic_app__daily_digest"].doc_md
    path.write_text(path.read_text().replace("page_size=10", "page_size=5"))
    doc = bag(dags_folder).dags["logic_app__daily_digest"].doc_md
    assert "**Changed since deployed version 1**" in doc and "demobank workflows diff daily_digest" in doc


def test_the_banks_functions_folder_is_loaded_and_a_broken_file_is_an_import_error_of_its_own(
        dags_folder: Path) -> None:
    from demobank.logic_apps.functions import REGISTRY

    functions = dags_folder / "functions"
    functions.mkdir()
    (functions / "scores.py").write_text(textwrap.dedent("""\
        from demobank.logic_apps.functions import function


        @function
        def loader_test_double(value: int) -> int:
            return value * 2
        """))
    (functions / "broken.py").write_text("import no_such_module_for_the_loader_test\n")
    (dags_folder / "logic_apps" / "uses_it.yaml").write_text(textwrap.dedent("""\
        name: uses_it
        description: d
        owner: o
        trigger: {type: manual}
        steps:
          - {id: double, type: function, function: loader_test_double, arguments: {value: 21}}
        """))
    try:
        loaded = bag(dags_folder)
        assert "logic_app__uses_it" in loaded.dags and "logic_app__daily_digest" in loaded.dags
        assert set(loaded.import_errors) == {"functions/broken.py"}
        assert "No module named 'no_such_module_for_the_loader_test'" in loaded.import_errors["functions/broken.py"]
        assert REGISTRY["loader_test_double"].run({"value": 21}) == 42
    finally:
        REGISTRY.pop("loader_test_double", None)
