"""Deployed versions of Logic App definitions: deploy, history, the event trigger's target, and the commands
``demobank workflows deploy|diff|versions|show``, on a migrated suite database (SQLite; PostgreSQL where marked)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from demobank.cli import main
from demobank.db.engine import dispose_engines, get_engine
from demobank.db.migrate import upgrade
from demobank.db.models import EventTarget, LogicAppVersion, TargetAuditEntry
from demobank.events import targets
from demobank.logic_apps import versions
from demobank.logic_apps.commands import DEFINITIONS_DIR_ENV, TEMPLATES
from demobank.logic_apps.definition import parse_definition
from tests.db.conftest import _isolated_engines, postgres_admin_url, postgres_url, sqlite_url  # noqa: F401 - fixtures

AUTHOR = "ada"


def definition(name: str, trigger: str = "manual", *, description: str = "What it does.") -> str:
    """A definition that validates (the templates of `demobank workflows new`)."""
    return (f"name: {name}\ndescription: {description}\nowner: integration-engineering\n"
            + TEMPLATES[trigger].replace("{name}", name))


def event_definition(name: str, match: str = '{amount: {">=": "1000"}}') -> str:
    text = definition(name, "event")
    assert 'match: {amount: {">=": "1000"}}' in text
    return text.replace('match: {amount: {">=": "1000"}}', f"match: {match}")


@pytest.fixture
def sqlite_engine(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:  # noqa: F811
    """A migrated SQLite suite database, also the command line's (DEMOBANK_DB_URL)."""
    upgrade(sqlite_url)
    monkeypatch.setenv("DEMOBANK_DB_URL", sqlite_url)
    yield get_engine(sqlite_url)
    dispose_engines()


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Engine]:  # noqa: F811
    upgrade(postgres_url)
    yield get_engine(postgres_url)
    dispose_engines()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Engine:
    return request.getfixturevalue(f"{request.param}_engine")


def deploy(engine: Engine, text: str, author: str = AUTHOR) -> tuple[versions.Version, bool]:
    return versions.deploy(engine, parse_definition(text), text, author=author)


def version_count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(LogicAppVersion))


def the_target(engine: Engine, name: str) -> EventTarget | None:
    with Session(engine) as session:
        return session.scalar(select(EventTarget).where(EventTarget.name == name))


def audit_actions(engine: Engine, target_name: str) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(entry.action, entry.actor) for entry in session.scalars(
            select(TargetAuditEntry).where(TargetAuditEntry.target_name == target_name).order_by(TargetAuditEntry.id))]


# -- versions -----------------------------------------------------------------------------------------------------


def test_content_hash_is_the_sha256_of_the_text() -> None:
    assert versions.content_hash("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert versions.content_hash("a\n") != versions.content_hash("a\r\n")


def test_deploy_records_versions_and_keeps_the_earlier_ones_readable(engine: Engine) -> None:
    first = definition("onboarding")
    version, created = deploy(engine, first)
    assert created is True
    assert (version.name, version.number, version.author, version.text) == ("onboarding", 1, AUTHOR, first)
    assert version.content_hash == versions.content_hash(first)
    assert version.deployed_at.utcoffset() is not None and version.deployed_at.utcoffset().total_seconds() == 0

    again, created = deploy(engine, first, author="grace")
    assert created is False
    assert again == version  # the same version, still ada's: nothing recorded
    assert version_count(engine) == 1

    second = definition("onboarding", description="What it does, now better.")
    newer, created = deploy(engine, second, author="grace")
    assert (created, newer.number, newer.author, newer.text) == (True, 2, "grace", second)

    assert versions.latest(engine, "onboarding") == newer
    assert [v.number for v in versions.history(engine, "onboarding")] == [2, 1]
    stored = versions.get_version(engine, "onboarding", 1)
    assert stored.text == first and stored.content_hash == version.content_hash and stored.author == AUTHOR
    assert stored.deployed_at == version.deployed_at

    # Going back to the first text is a new version (the latest differs), not a reuse of version 1.
    back, created = deploy(engine, first)
    assert (created, back.number, back.content_hash) == (True, 3, version.content_hash)


def test_lookups_of_what_was_never_deployed(engine: Engine) -> None:
    assert versions.latest(engine, "nothing") is None
    assert versions.history(engine, "nothing") == []
    assert versions.latest_versions(engine) == {}
    with pytest.raises(versions.VersionNotFoundError, match="has no deployed version"):
        versions.get_version(engine, "nothing", 1)
    deploy(engine, definition("onboarding"))
    with pytest.raises(LookupError, match=r"has no version 2 \(versions 1 to 1"):
        versions.get_version(engine, "onboarding", 2)


def test_latest_versions_reads_every_workflow_in_one_query(engine: Engine) -> None:
    deploy(engine, definition("alpha"))
    deploy(engine, definition("alpha", description="Second."))
    deploy(engine, definition("alpha", description="Third."))
    deploy(engine, definition("beta", "schedule"))
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        found = versions.latest_versions(engine)
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert len(statements) == 1, statements
    assert {name: v.number for name, v in found.items()} == {"alpha": 3, "beta": 1}
    assert found["alpha"].text == definition("alpha", description="Third.")


def test_deploy_refuses_a_text_of_another_workflow_and_an_empty_author(engine: Engine) -> None:
    with pytest.raises(ValueError, match="defines workflow 'beta', not 'alpha'"):
        versions.deploy(engine, parse_definition(definition("alpha")), definition("beta"), author=AUTHOR)
    with pytest.raises(ValueError, match="needs its author"):
        deploy(engine, definition("alpha"), author=" ")
    assert version_count(engine) == 0


def _racing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the next two deploys read the latest version before either records one (a barrier after each's first
    read), so that both try the same number; return the names read (each read once per attempt)."""
    real = versions._latest_row
    barrier = threading.Barrier(2, timeout=60)
    waited = threading.local()
    reads: list[str] = []

    def latest_row(session: Session, name: str) -> Any:
        row = real(session, name)
        reads.append(name)
        if not getattr(waited, "done", False):
            waited.done = True
            barrier.wait()
        return row

    monkeypatch.setattr(versions, "_latest_row", latest_row)
    return reads


def _deploy_at_once(engine: Engine, texts: list[str]) -> list[tuple[versions.Version, bool]]:
    results: list[Any] = [None] * len(texts)

    def run(index: int) -> None:
        try:
            results[index] = deploy(engine, texts[index], author=f"author{index}")
        except BaseException as error:  # handed to the test's thread
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


@pytest.mark.postgres
def test_concurrent_deploys_never_share_a_number(postgres_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _racing(monkeypatch)
    results = _deploy_at_once(postgres_engine, [definition("onboarding", description=f"Text {i}.") for i in (0, 1)])

    assert sorted(version.number for version, _ in results) == [1, 2]
    assert all(created for _, created in results)
    assert len(reads) == 3  # both read "none yet"; the one refused by the unique constraint read again
    assert [v.number for v in versions.history(postgres_engine, "onboarding")] == [2, 1]


@pytest.mark.postgres
def test_concurrent_deploys_of_the_same_text_record_one_version(postgres_engine: Engine,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _racing(monkeypatch)
    text = definition("onboarding")
    results = _deploy_at_once(postgres_engine, [text, text])

    assert sorted(created for _, created in results) == [False, True]
    assert {version.number for version, _ in results} == {1}
    assert len(reads) == 3
    assert version_count(postgres_engine) == 1


def test_a_deploy_that_loses_the_race_twice_says_so_and_records_nothing(engine: Engine,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def taken(*_args: Any) -> Any:
        raise IntegrityError("INSERT", {}, Exception("duplicate key value violates unique constraint"))

    monkeypatch.setattr(versions, "_record", taken)
    with pytest.raises(versions.VersionError, match=r"took the next version number twice.*run the deploy again"):
        deploy(engine, definition("onboarding"))
    assert version_count(engine) == 0


# -- the event trigger's target -------------------------------------------------------------------------------------


def test_an_event_trigger_gets_an_airflow_dag_target_kept_in_step(engine: Engine) -> None:
    name = "big_spender"
    target_name = "logic-app-big-spender"
    assert versions.target_name(name) == target_name

    deploy(engine, event_definition(name))
    target = the_target(engine, target_name)
    assert target is not None
    assert (target.kind, target.event_types, target.match, target.config, target.enabled) == (
        "airflow_dag", ["transaction.created"], {"amount": {">=": "1000"}}, {"dag_id": "logic_app__big_spender"},
        True)
    assert audit_actions(engine, target_name) == [("created", AUTHOR)]

    deploy(engine, event_definition(name))  # nothing new: the target is not touched
    assert audit_actions(engine, target_name) == [("created", AUTHOR)]

    version, _ = deploy(engine, event_definition(name, '{amount: {">=": "5000"}, currency: [EUR, USD]}'),
                        author="grace")
    assert version.number == 2
    target = the_target(engine, target_name)
    assert target.match == {"amount": {">=": "5000"}, "currency": ["EUR", "USD"]} and target.enabled
    assert audit_actions(engine, target_name)[-1] == ("changed", "grace")

    version, _ = deploy(engine, definition(name, "manual"))
    assert version.number == 3
    target = the_target(engine, target_name)
    assert target is not None and target.enabled is False
    assert audit_actions(engine, target_name)[-1] == ("disabled", AUTHOR)

    deploy(engine, definition(name, "manual"))  # still manual, still disabled, nothing recorded
    assert len(audit_actions(engine, target_name)) == 3

    deploy(engine, event_definition(name))  # an event trigger again: the target is enabled with its filter
    target = the_target(engine, target_name)
    assert target.enabled is True and target.match == {"amount": {">=": "1000"}}
    assert [action for action, _ in audit_actions(engine, target_name)] == ["created", "changed", "disabled",
                                                                            "changed"]
    assert [v.number for v in versions.history(engine, name)] == [4, 3, 2, 1]


def test_a_redeploy_repairs_the_target_but_keeps_an_operators_disabling(engine: Engine) -> None:
    text = event_definition("big_spender")
    deploy(engine, text)
    target = the_target(engine, "logic-app-big-spender")
    spec = targets.TargetSpec.model_validate({"name": target.name, "kind": "airflow_dag", "event_types": ["*"],
                                              "config": {"dag_id": "logic_app__big_spender"}, "enabled": False})
    targets.update_target(engine, target.id, spec, actor="operator")

    _, created = deploy(engine, text)

    assert created is False
    target = the_target(engine, "logic-app-big-spender")
    assert target.event_types == ["transaction.created"] and target.match == {"amount": {">=": "1000"}}
    assert target.enabled is False  # the operator's brake stays on until a new version is deployed
    assert version_count(engine) == 1


def test_an_event_trigger_whose_target_name_is_taken_is_refused_before_anything_is_recorded(engine: Engine) -> None:
    targets.create_target(engine, targets.TargetSpec.model_validate(
        {"name": "logic-app-big-spender", "kind": "eventbridge", "event_types": ["*"]}), actor="operator")

    with pytest.raises(versions.VersionError, match=r"exists and is not the airflow_dag target of "
                                                    r"logic_app__big_spender.*nothing was recorded"):
        deploy(engine, event_definition("big_spender"))

    assert version_count(engine) == 0
    assert the_target(engine, "logic-app-big-spender").kind == "eventbridge"
    deploy(engine, definition("big_spender", "manual"))  # not an event trigger: that target is left alone
    assert the_target(engine, "logic-app-big-spender").enabled is True


# -- the commands ---------------------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine) -> Path:
    """The definitions' folder of the commands (and the suite database of `sqlite_engine`)."""
    path = tmp_path / "logic_apps"
    path.mkdir()
    monkeypatch.setenv(DEFINITIONS_DIR_ENV, str(path))
    monkeypatch.setenv("DEMOBANK_AUTHOR", AUTHOR)
    return path


def test_cli_deploy_versions_show(folder: Path, sqlite_engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    file = folder / "onboarding.yaml"
    first = definition("onboarding")
    file.write_text(first)

    assert main(["workflows", "deploy", "onboarding"]) == 0
    assert capsys.readouterr().out == f"deployed onboarding version 1 (sha256 {versions.content_hash(first)})\n"
    assert main(["workflows", "deploy", "onboarding", "--author", "grace"]) == 0
    assert capsys.readouterr().out == "onboarding is already deployed as version 1: nothing changed\n"

    second = definition("onboarding", description="Better.")
    file.write_text(second)
    assert main(["workflows", "deploy", "onboarding", "--author", "grace"]) == 0
    assert "deployed onboarding version 2 (sha256 " in capsys.readouterr().out

    assert main(["workflows", "versions", "onboarding"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "version\tdeployed at (UTC)\tauthor\tsha256"
    assert [line.split("\t")[0::2] for line in lines[1:]] == [["2", "grace"], ["1", AUTHOR]]
    assert lines[2].split("\t")[3] == versions.content_hash(first)[:12]

    assert main(["workflows", "show", "onboarding", "--version", "1"]) == 0
    assert capsys.readouterr().out == first
    assert main(["workflows", "show", "onboarding"]) == 0
    assert capsys.readouterr().out == second
    assert main(["workflows", "show", "onboarding", "--version", "7"]) == 1
    assert "has no version 7" in capsys.readouterr().err
    assert main(["workflows", "versions", "nothing"]) == 1
    assert "'nothing' has no deployed version" in capsys.readouterr().err


def test_cli_deploy_of_an_event_trigger_names_its_target(folder: Path, sqlite_engine: Engine,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "big_spender.yaml").write_text(event_definition("big_spender"))
    assert main(["workflows", "deploy", "big_spender"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "event target 'logic-app-big-spender': created"
    assert audit_actions(sqlite_engine, "logic-app-big-spender") == [("created", AUTHOR)]


def test_cli_deploy_refuses_an_invalid_definition_and_records_nothing(
        folder: Path, sqlite_engine: Engine, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SENDGRID_PROD", raising=False)
    file = folder / "onboarding.yaml"
    file.write_text(definition("onboarding").replace("type: send_email", "type: send_email\n    connection: "
                                                                         "sendgrid_prod"))

    assert main(["workflows", "deploy", "onboarding"]) == 1
    out, err = capsys.readouterr()
    assert f"{file}:11:17: steps[0].connection: no connection 'sendgrid_prod'" in out
    assert "1 problem(s): nothing deployed" in err
    assert version_count(sqlite_engine) == 0

    file.write_text("name: onboarding\ndescription: [\n")  # not even YAML: found by its file name
    assert main(["workflows", "deploy", "onboarding"]) == 1
    assert f"{file}:" in capsys.readouterr().out
    assert version_count(sqlite_engine) == 0

    assert main(["workflows", "deploy", "nothing"]) == 1
    assert "no definition named 'nothing'" in capsys.readouterr().err


def test_cli_deploy_all_deploys_the_valid_definitions_and_exits_1_for_the_others(
        folder: Path, sqlite_engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "onboarding.yaml").write_text(definition("onboarding"))
    (folder / "broken.yaml").write_text("name: broken\ndescription: [\n")
    assert main(["workflows", "deploy", "--all"]) == 1
    out, err = capsys.readouterr()
    assert "deployed onboarding version 1" in out and f"{folder / 'broken.yaml'}:" in out
    assert "2 definition(s): 1 deployed or unchanged, 1 refused" in err
    assert version_count(sqlite_engine) == 1
    (folder / "broken.yaml").unlink()
    assert main(["workflows", "deploy", "--all"]) == 0
    assert main(["workflows", "deploy", "onboarding", "--all"]) == 2  # a name or --all, not both


def test_cli_diff_exit_codes_and_output(folder: Path, sqlite_engine: Engine,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    file = folder / "onboarding.yaml"
    file.write_text(definition("onboarding"))
    assert main(["workflows", "diff", "onboarding"]) == 1
    assert "onboarding is not deployed yet" in capsys.readouterr().out

    assert main(["workflows", "deploy", "onboarding"]) == 0
    capsys.readouterr()
    assert main(["workflows", "diff", "onboarding"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "the same as the deployed version 1" in err

    file.write_text(definition("onboarding", description="Better."))
    assert main(["workflows", "diff", "onboarding"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"--- onboarding version 1 (deployed)\n+++ {file}\n@@ ")
    assert "\n-description: What it does.\n+description: Better.\n" in out

    file.write_text(definition("onboarding").rstrip("\n"))  # only the last newline is gone
    assert main(["workflows", "diff", "onboarding"]) == 1
    assert "\\ No newline at end of file\n" in capsys.readouterr().out
