"""``demobank workflows …``: the Logic App definitions' command line (``validate``, ``list``, ``render``,
``dry-run``, ``new``; and ``deploy``, ``diff``, ``versions``, ``show`` on the versions deployed to the suite's
database, see :mod:`demobank.logic_apps.versions`)."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import getpass
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from demobank.logic_apps.definition import (
    DEFINITIONS_DIR_ENV,
    SCHEMA_FILE,
    DefinitionError,
    Problem,
    definition_files_in,
    definitions_dir,
    load_definition,
)

AUTHOR_ENV = "DEMOBANK_AUTHOR"


def definition_files(paths: list[str] | None = None) -> list[Path]:
    """The ``*.yaml``/``*.yml`` files of the given paths (folders are searched, files taken as they are), or of
    :func:`definitions_dir`."""
    found: list[Path] = []
    for entry in [Path(p) for p in paths] if paths else [definitions_dir()]:
        if entry.is_dir():
            found += definition_files_in(entry)
        else:
            found.append(entry)
    return found


def _validate(args: argparse.Namespace) -> int:
    from demobank.logic_apps.validate import Context, validate_files

    files = definition_files(args.paths)
    if not files:
        print(f"no definitions (*.yaml) in {', '.join(args.paths or [str(definitions_dir())])}", file=sys.stderr)
        return 1
    results = validate_files(files, Context.of_project(args.settings))
    problems = [problem for found in results.values() for problem in found]
    for problem in problems:
        print(problem)
    bad = sum(1 for found in results.values() if found)
    summary = f"{len(files)} definition(s): {len(files) - bad} valid, {bad} with {len(problems)} problem(s)"
    print(summary, file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


def _list(args: argparse.Namespace) -> int:
    for path in definition_files(args.paths):
        try:
            workflow = load_definition(path)
        except DefinitionError as error:
            print(f"{path}: not valid ({len(error.problems)} problem(s): run `demobank workflows validate {path}`)")
            continue
        print(f"{workflow.name}\t{workflow.trigger.type}\t{len(workflow.steps)} step(s)\t{workflow.dag_id}\t{path}")
    return 0


def graph(workflow: Any) -> dict[str, Any]:
    """The DAG a definition becomes: its tasks (one per step; a for_each is one mapped task) and edges with the
    statuses the downstream step runs after."""
    return {"dag_id": workflow.dag_id, "trigger": workflow.trigger.type,
            "tasks": [{"id": step.id, "type": step.type} for step in workflow.steps],
            "edges": [{"from": parent, "to": child, "statuses": [status.value for status in statuses]}
                      for child, parents in workflow.upstream().items() for parent, statuses in parents.items()]}


def _find(name: str, paths: list[str] | None) -> Path:
    for path in definition_files(paths):
        with contextlib.suppress(DefinitionError):
            if load_definition(path).name == name:
                return path
    raise LookupError(f"no valid definition named {name!r} in {', '.join(paths or [str(definitions_dir())])} "
                      "(see `demobank workflows list`)")


def _render(args: argparse.Namespace) -> int:
    workflow = load_definition(_find(args.name, args.paths))
    shape = graph(workflow)
    if args.format == "json":
        print(json.dumps(shape, indent=2))
    elif args.format == "dot":
        print(f'digraph "{shape["dag_id"]}" {{')
        for task in shape["tasks"]:
            print(f'  "{task["id"]}" [label="{task["id"]}\\n{task["type"]}"];')
        for edge in shape["edges"]:
            label = "" if edge["statuses"] == ["succeeded"] else f' [label="{"|".join(edge["statuses"])}"]'
            print(f'  "{edge["from"]}" -> "{edge["to"]}"{label};')
        print("}")
    else:
        print(f"{workflow.name} (DAG {workflow.dag_id}), trigger {workflow.trigger.type}")
        parents = workflow.upstream()
        width = max(len(step.id) for step in workflow.steps)
        for step in workflow.steps:
            after = ", ".join(f"{parent} ({'|'.join(s.value for s in statuses)})"
                              for parent, statuses in parents.get(step.id, {}).items())
            print(f"  {step.id:<{width}}  {step.type:<13}" + (f"  after {after}" if after else ""))
    return 0


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    pairs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} {item!r} is not key=value")
        pairs[key] = value
    return pairs


def _json_file(path: str) -> Any:
    try:
        return json.loads(Path(path.removeprefix("@")).read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None


def _dry_run(args: argparse.Namespace) -> int:
    from demobank.logic_apps.dry_run import dry_run
    from demobank.masking import mask

    workflow = load_definition(_find(args.name, args.paths))
    responses = {step: _json_file(file) for step, file in _pairs(args.response, "--response").items()}
    event = _json_file(args.event) if args.event else None
    report = dry_run(workflow, _pairs(args.input, "--input"), event=event, responses=responses)
    print(f"dry run of {workflow.name} (DAG {workflow.dag_id}): nothing is sent")
    for step in report.steps:
        line = f"  {step.step_id} ({step.type}): {step.status.value}"
        if step.error:
            line += f": {step.error}"
        elif step.reason:
            line += f" ({step.reason})"
        print(line)
        for would in step.would:
            shown = {key: ([mask(to) for to in value] if key == "to" else value) for key, value in would.fields.items()}
            print(f"      would send {would.kind}: {json.dumps(shown, default=str, ensure_ascii=False)}")
    return 1 if any(step.status.value == "failed" for step in report.steps) else 0


TEMPLATES = {
    "manual": """\
trigger:
  type: manual
  inputs:
    email: {type: string, required: true, pattern: "^[^@]+@[^@]+$", description: Who gets the e-mail}
steps:
  - id: notify
    type: send_email
    to: "{{ inputs.email }}"
    subject: Hello from Demo Bank
    body: This e-mail was sent by the {name} Logic App.
""",
    "schedule": """\
trigger:
  type: schedule
  cron: "0 6 * * *"
steps:
  - id: announce
    type: publish_event
    event_type: demobank.ping
    data: {message: "{name} ran on {{ ds }}"}
""",
    "event": """\
trigger:
  type: event
  event_type: transaction.created
  match: {amount: {">=": "1000"}}
steps:
  - id: score
    type: function
    function: risk_score
    arguments: {transaction: "{{ trigger.event.data }}"}
  - id: notify
    type: send_sms
    to: "+15005550006"
    body: "Transaction {{ trigger.event.data.transaction_id }}: risk {{ steps.score.output }}"
""",
}


def _new(args: argparse.Namespace) -> int:
    from demobank.logic_apps.definition import NAME_PATTERN

    if not re.match(NAME_PATTERN, args.name):
        raise ValueError(f"{args.name!r} is not a workflow name: lower case letters, digits and _, starting with a "
                         "letter (it becomes the DAG id logic_app__<name>)")
    folder = Path(args.dir) if args.dir else definitions_dir()
    path = folder / f"{args.name}.yaml"
    if path.exists():
        raise ValueError(f"{path} exists already: choose another name or edit it")
    folder.mkdir(parents=True, exist_ok=True)
    schema = os.path.relpath(SCHEMA_FILE, folder)
    body = TEMPLATES[args.trigger].replace("{name}", args.name)
    path.write_text(f"# yaml-language-server: $schema={schema}\n"
                    f"name: {args.name}\ndescription: What {args.name} does (say it here).\n"
                    f"owner: {os.environ.get('USER') or 'integration-engineering'}\n" + body, encoding="utf-8")
    print(f"{path}: a new workflow with a {args.trigger} trigger; check it with `demobank workflows validate {path}`")
    return 0


def _file_of(name: str, paths: list[str] | None) -> Path:
    """The definition file of workflow ``name``: the one valid definition of that name, else ``<name>.yaml`` (or
    ``.yml``) in the folders searched (a file whose problems hide its name is still found by its file name)."""
    matches = []
    for path in definition_files(paths):
        with contextlib.suppress(DefinitionError):
            if load_definition(path).name == name:
                matches.append(path)
    if len(matches) > 1:
        raise LookupError(f"workflow {name!r} is defined in {len(matches)} files ({', '.join(map(str, matches))}): "
                          "names are unique, remove or rename one")
    if matches:
        return matches[0]
    folders = [Path(p) for p in paths] if paths else [definitions_dir()]
    for folder in folders:
        for suffix in (".yaml", ".yml"):
            candidate = folder / f"{name}{suffix}"
            if folder.is_dir() and candidate.is_file():
                return candidate
    raise LookupError(f"no definition named {name!r} in {', '.join(map(str, folders))} (see `demobank workflows "
                      "list`)")


def _engine() -> Any:
    from demobank.db.engine import get_engine

    return get_engine()


def _author(given: str | None) -> str:
    if given:
        return given
    if os.environ.get(AUTHOR_ENV):
        return os.environ[AUTHOR_ENV]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        raise ValueError(f"who deploys? no login name here: pass --author or set {AUTHOR_ENV}") from None


def _deploy(args: argparse.Namespace) -> int:
    if args.all == (args.name is not None):
        print("give a workflow NAME or --all (every definition of the folder), not both", file=sys.stderr)
        return 2
    if args.all:
        files = definition_files(args.paths)
        codes = [_deploy_file(path, None, args) for path in files]
        print(f"{len(files)} definition(s): {codes.count(0)} deployed or unchanged, {len(codes) - codes.count(0)} "
              "refused", file=sys.stderr if any(codes) else sys.stdout)
        return 1 if any(codes) else 0
    return _deploy_file(_file_of(args.name, args.paths), args.name, args)


def _deploy_file(path: Path, name: str | None, args: argparse.Namespace) -> int:
    from demobank.logic_apps.validate import Context, validate_text
    from demobank.logic_apps.versions import deploy_workflow

    text = path.read_text(encoding="utf-8")  # read once: what is validated is what is recorded
    workflow, problems = validate_text(text, str(path), Context.of_project(args.settings))
    if workflow is not None and name is not None and workflow.name != name:
        problems = [*problems, Problem(str(path), 1, 1, "name", f"the file defines workflow {workflow.name!r}, not "
                                                                f"{name!r}")]
    if problems or workflow is None:
        for problem in problems:
            print(problem)
        print(f"{path}: {len(problems)} problem(s): nothing deployed", file=sys.stderr)
        return 1
    done = deploy_workflow(_engine(), workflow, text, author=_author(args.author))
    version = done.version
    if done.created:
        print(f"deployed {version.name} version {version.number} (sha256 {version.content_hash})")
    else:
        print(f"{version.name} is already deployed as version {version.number}: nothing changed")
    if done.trigger.action != "none":
        print(f"event target {done.trigger.target_name!r}: {done.trigger.action}")
    return 0


def _diff(args: argparse.Namespace) -> int:
    from demobank.logic_apps.versions import latest

    path = _file_of(args.name, args.paths)
    text = path.read_text(encoding="utf-8")
    deployed = latest(_engine(), args.name)
    if deployed is None:
        print(f"{args.name} is not deployed yet (`demobank workflows deploy {args.name}` records version 1)")
        return 1
    lines = list(difflib.unified_diff(deployed.text.splitlines(keepends=True), text.splitlines(keepends=True),
                                      fromfile=f"{args.name} version {deployed.number} (deployed)", tofile=str(path)))
    if not lines:
        print(f"{path} is the same as the deployed version {deployed.number} of {args.name}", file=sys.stderr)
        return 0
    for line in lines:
        sys.stdout.write(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return 1


def _versions(args: argparse.Namespace) -> int:
    from demobank.logic_apps.versions import VersionNotFoundError, history

    found = history(_engine(), args.name)
    if not found:
        raise VersionNotFoundError(f"workflow {args.name!r} has no deployed version: deploy it with "
                                   f"`demobank workflows deploy {args.name}`")
    print("version\tdeployed at (UTC)\tauthor\tsha256")
    for version in found:
        print(f"{version.number}\t{version.deployed_at:%Y-%m-%d %H:%M:%S}\t{version.author}\t"
              f"{version.content_hash[:12]}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from demobank.logic_apps.versions import VersionNotFoundError, get_version, latest

    engine = _engine()
    if args.version is None:
        version = latest(engine, args.name)
        if version is None:
            raise VersionNotFoundError(f"workflow {args.name!r} has no deployed version: deploy it with "
                                       f"`demobank workflows deploy {args.name}`")
    else:
        version = get_version(engine, args.name, args.version)
    sys.stdout.write(version.text)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """The ``demobank workflows`` subcommands; each sets ``handler`` (args → exit code)."""
    validate = commands.add_parser("validate", help="check definitions: their schema and their meaning; each "
                                                    "problem as file:line:column: field: message; exit 1 on any")
    validate.add_argument("paths", nargs="*", help=f"files or folders (default: ${DEFINITIONS_DIR_ENV} or "
                                                   "dags/logic_apps/)")
    validate.add_argument("--settings", help="the settings file whose connections exist (default: the project's "
                                             "airflow_settings.yaml; AIRFLOW_CONN_* variables count too)")
    validate.set_defaults(handler=_validate)
    listing = commands.add_parser("list", help="every definition: name, trigger, steps, DAG id, file")
    listing.add_argument("paths", nargs="*")
    listing.set_defaults(handler=_list)
    render = commands.add_parser("render", help="the DAG a definition becomes: tasks and edges")
    render.add_argument("name")
    render.add_argument("--format", choices=("text", "json", "dot"), default="text")
    render.add_argument("--path", dest="paths", action="append", help="where to look (default: the definitions' "
                                                                      "folder)")
    render.set_defaults(handler=_render)
    dry = commands.add_parser("dry-run", help="run the steps here with recorders: print what each would send; "
                                              "nothing is sent")
    dry.add_argument("name")
    dry.add_argument("--input", action="append", metavar="KEY=VALUE", help="a manual trigger's input (repeat)")
    dry.add_argument("--event", metavar="FILE", help="the event envelope (JSON) of an event trigger")
    dry.add_argument("--response", action="append", metavar="STEP=FILE",
                     help="what an http_request step would get back (JSON file)")
    dry.add_argument("--path", dest="paths", action="append", help="where to look (default: the definitions' "
                                                                   "folder)")
    dry.set_defaults(handler=_dry_run)
    new = commands.add_parser("new", help="write a new definition that validates, to start from")
    new.add_argument("name")
    new.add_argument("--trigger", choices=sorted(TEMPLATES), required=True)
    new.add_argument("--dir", help="where to write it (default: the definitions' folder)")
    new.set_defaults(handler=_new)
    deploy = commands.add_parser("deploy", help="validate a definition (as validate does), then record it as the "
                                                "workflow's next version in the suite's database (nothing if it is "
                                                "the deployed version already); an event trigger's airflow_dag "
                                                "target is kept in step")
    deploy.add_argument("name", nargs="?")
    deploy.add_argument("--all", action="store_true", help="every definition of the folder (each validated; the "
                                                           "valid ones deployed; exit 1 if any is refused)")
    deploy.add_argument("--author", help=f"who deploys it (default: ${AUTHOR_ENV}, else the login name)")
    deploy.add_argument("--settings", help="the settings file whose connections exist (as for validate)")
    deploy.add_argument("--path", dest="paths", action="append", help="where to look (default: the definitions' "
                                                                      "folder)")
    deploy.set_defaults(handler=_deploy)
    diff = commands.add_parser("diff", help="the definition file against the deployed version (unified diff); "
                                            "exit 0 if they are the same, 1 if they differ or it is not deployed "
                                            "yet, like git diff --exit-code")
    diff.add_argument("name")
    diff.add_argument("--path", dest="paths", action="append", help="where to look (default: the definitions' "
                                                                    "folder)")
    diff.set_defaults(handler=_diff)
    versions = commands.add_parser("versions", help="the deployed versions of a workflow, newest first: number, "
                                                    "time, author, hash")
    versions.add_argument("name")
    versions.set_defaults(handler=_versions)
    show = commands.add_parser("show", help="print the text of a deployed version")
    show.add_argument("name")
    show.add_argument("--version", type=int, metavar="N", help="the version's number (default: the latest)")
    show.set_defaults(handler=_show)
