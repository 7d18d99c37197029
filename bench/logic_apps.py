"""Logic Apps: the loader's parse time and a 40-step run in `make run`, against the same DAGs written by hand.

In one run, side by side:

1. **Parse time** of ``--counts`` (100 and 1,000) generated definitions through the loader
   (``dags/logic_apps_loader.py`` → :func:`demobank.logic_apps.loader.load_dags`), against the same workflows as
   hand-written DAG files: one ``.py`` per workflow that builds the same DAG directly in Python with the same
   operator classes of :mod:`demobank.logic_apps.runtime` and the same ``Param``s (what an engineer writes without
   the loader; an untimed check first compares the two DAGs of a few workflows task by task). Each definition is a
   6-step workflow like the examples: ``risk_score`` and ``format_amount`` functions, a condition, ``send_sms``,
   ``send_email`` and a ``demobank.ping`` event, with ``run_after`` and templates over the manual trigger's inputs.
   Every measurement is a fresh interpreter (as each DAG file parse is a fresh process in Airflow's DAG processor)
   with a temporary ``AIRFLOW_HOME`` and ``DEMOBANK_DB_URL`` on a migrated temporary SQLite suite database. Before
   the clock starts the child imports what the DAG processor's parsing process already has (Airflow's DAG
   processing modules, and the ``airflow.*`` modules the file imports: ``[dag_processor]
   parsing_pre_import_modules``); then the DagBag parses, and its own per-file durations (``dagbag_stats``) are the
   parse time; serialising the DAGs (what the DAG processor does next) is timed apart; the process's whole wall
   time (interpreter start included) is measured from outside. Three shapes:

   * ours: the loader, one DAG file for all the definitions (one parse process in the DAG processor);
   * hand-written, one process: one DagBag over the folder of ``.py`` files (what ``airflow dags list`` or a test
     does; the first file pays the imports, the others reuse them);
   * hand-written, one process per file: what Airflow's DAG processor does with ``.py`` files. ``--per-file-sample``
     files are parsed each in its own process per repetition and the total is extrapolated to all the files (the
     count times the median).

   ``--repeat`` (5) repetitions, interleaved and in a rotating order, after one untimed warm-up of each (Python's
   bytecode caches); medians. Target: 100 definitions parse through the loader in under 2 s (its DagBag time).
   An untimed cProfile of the loader on the first count says where its time goes (``--no-profile`` skips it).

2. **A 40-step sequential run in the live platform** (``--no-live`` skips it): ``make run``'s launcher
   (:class:`_live_platform.LivePlatform`) in a temporary home with ``DEMOBANK_LOGIC_APPS_DIR`` = a temporary folder
   holding a 40-step Logic App of no-op function steps (``bench_sequential_40``) and copies of the examples, and
   ``DEMOBANK_FUNCTIONS_DIR`` = a temporary folder with a copy of ``dags/functions/`` and the ``noop`` function.
   The hand-written DAG (``bench_handwritten_40``: 40 ``@task`` no-op tasks chained, what a user writes) is in a
   temporary folder that the launcher's Airflow reads as a second DAG bundle
   (``AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST``: the default ``dags-folder`` bundle plus a
   ``LocalDagBundle`` on that folder), so nothing is written under the project's ``dags/``. After the platform's own
   start-up work is done, the two DAGs are triggered alternately (``POST /api/v2/dags/{id}/dagRuns``, logical date
   null, one run at a time), ``--live-repeat`` (3) times each; a run's duration is its ``end_date - start_date``.
   Target: ours within 10% of the hand-written DAG's median. Beside them, the published reference: Airflow 2.7.3
   took 116 s for 40 lightweight sequential tasks on 2 vCPUs.

Run: ``flock /tmp/demobank-e2e.lock .venv/bin/python bench/logic_apps.py`` (the lock keeps another ``make run``,
such as the end-to-end tests', off the machine meanwhile; about 15 minutes on 2 cores), or ``make bench`` (every
``bench/*.py``); ``--quick`` for a smoke run (100 definitions, 1 repetition, no live part, no BENCHMARKS.md). Exits
1 when a target is missed. Writes its section of BENCHMARKS.md (not with ``--quick`` unless ``--write``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import PROJECT_DIR, finish, machine, markdown_table, median, progress, spread

NAME = "logic_apps"
PARSE_TARGET = 2.0  # seconds: 100 definitions through the loader, the DagBag's parse time
PARSE_TARGET_COUNT = 100
LIVE_TARGET = 1.10  # ours / hand-written, run duration
REFERENCE_SECONDS = 116.0  # Airflow 2.7.3, 40 lightweight sequential tasks, 2 vCPUs (the published reference)
RUN_TIMEOUT = 1200.0
REGISTER_TIMEOUT = 600.0
LOADER_FILE = PROJECT_DIR / "dags" / "logic_apps_loader.py"
EXAMPLES_DIR = PROJECT_DIR / "dags" / "logic_apps"
FUNCTIONS_DIR = PROJECT_DIR / "dags" / "functions"
SEQUENTIAL_NAME = "bench_sequential_40"
HANDWRITTEN_DAG_ID = "bench_handwritten_40"
RESULT_PREFIX = "BENCH-RESULT "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--counts", default="100,1000", help="definition counts to parse, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of every parse measurement (medians)")
    parser.add_argument("--per-file-sample", type=int, default=5,
                        help="hand-written files parsed each in its own process per repetition (the total is "
                             "extrapolated to all of them)")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                        help="an untimed cProfile of the loader on the first count: where its parse time goes")
    parser.add_argument("--live", action=argparse.BooleanOptionalAction, default=True,
                        help="the 40-step runs in a live `make run` (about 10 minutes more)")
    parser.add_argument("--live-repeat", type=int, default=3, help="runs of each DAG in the live platform")
    parser.add_argument("--steps", type=int, default=40, help="steps of the sequential workflow (live part)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (definitions, DAG files, make run's home and log)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 100 definitions, one repetition, no live part; no BENCHMARKS.md")
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=None,
                        help="refresh this benchmark's section of BENCHMARKS.md (default: yes, except --quick)")
    args = parser.parse_args(argv)
    try:
        args.counts = [int(part) for part in str(args.counts).split(",") if part.strip()]
    except ValueError:
        parser.error("--counts: give numbers separated by commas, e.g. 100,1000")
    if args.quick:
        args.counts, args.repeat, args.live = [min(args.counts[0], 100)], 1, False
        args.per_file_sample = min(args.per_file_sample, 2)
    if args.write is None:
        args.write = not args.quick
    for name in ("repeat", "per_file_sample", "live_repeat", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.counts or min(args.counts) < 1 or max(args.counts) > 9999:
        parser.error("--counts: between 1 and 9,999 definitions")
    return args


# -- the generated workflows -------------------------------------------------------------------------------

CURRENCIES = ("EUR", "USD", "GBP")
SMS_BODY = "Demo Bank: a card payment of {{ steps.amount_text.output }} was made. Not you? Call +31 20 000 0000."
EMAIL_SUBJECT = "A card payment of {{ steps.amount_text.output }}"
EMAIL_BODY = ("Hello,\n\na card payment of {{ steps.amount_text.output }} was made on your account "
              "({{ inputs.customer_id }}).\n\nDemo Bank")
TRANSACTION = ("{{ {'transaction_id': 'TXN-' ~ inputs.customer_id[5:], 'amount': inputs.amount, 'currency': "
               "inputs.currency, 'direction': 'debit', 'channel': 'card_not_present'} }}")
INPUTS = {  # name -> (type, required, pattern, description)
    "customer_id": ("string", True, "^CUST-[0-9A-Z]{5,20}$", "The customer's id, e.g. CUST-00042"),
    "phone": ("string", True, "^\\+[1-9][0-9]{6,14}$", "Their mobile number, E.164"),
    "email": ("string", True, "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", "Their e-mail address"),
}


def flow_name(n: int) -> str:
    return f"bench_flow_{n:04d}"


def _amount(n: int) -> float:
    return 250.0 + (n * 37) % 9_750 + 0.5


def _currency(n: int) -> str:
    return CURRENCIES[n % len(CURRENCIES)]


def definition_yaml(n: int, total: int) -> str:
    """Workflow ``n`` of ``total`` as a Logic App definition."""
    name = flow_name(n)
    inputs = "\n".join(f"    {key}: {{type: {kind}, required: true, pattern: {json.dumps(pattern)}, "
                       f"description: {json.dumps(text)}}}" for key, (kind, _, pattern, text) in INPUTS.items())
    body = "\n".join("      " + line if line else "" for line in EMAIL_BODY.split("\n"))
    return f"""# yaml-language-server: $schema=../../include/logic_apps/workflow.schema.json
# Generated by bench/logic_apps.py: {n} of {total}.
name: {name}
description: >-
  Scores a card payment, tells the customer by SMS when the score is high and always by e-mail, then pings the
  event bus. Generated by bench/logic_apps.py ({n} of {total}).
owner: integration-engineering
tags: [bench]
trigger:
  type: manual
  inputs:
{inputs}
    amount: {{type: number, default: {_amount(n)}, description: "The payment's amount"}}
    currency: {{type: string, enum: [EUR, USD, GBP], default: {_currency(n)}}}
steps:
  - id: score
    type: function
    function: risk_score
    arguments:
      transaction: {json.dumps(TRANSACTION)}
  - id: amount_text
    type: function
    function: format_amount
    arguments: {{amount: "{{{{ inputs.amount }}}}", currency: "{{{{ inputs.currency }}}}"}}
    run_after: []
  - id: risky
    type: condition
    expression: steps.score.output >= 0.6
    if_true: [sms]
    run_after: [score]
  - id: sms
    type: send_sms
    to: "{{{{ inputs.phone }}}}"
    body: {json.dumps(SMS_BODY)}
    run_after: [risky, amount_text]
    retries: 2
  - id: email
    type: send_email
    to: "{{{{ inputs.email }}}}"
    subject: {json.dumps(EMAIL_SUBJECT)}
    body: |-
{body}
    run_after: [amount_text]
    retries: 2
  - id: ping
    type: publish_event
    event_type: demobank.ping
    data: {{message: "{name}: {{{{ inputs.customer_id }}}} notified on {{{{ ds }}}}"}}
    run_after: {{sms: [succeeded, skipped], email: [succeeded, skipped]}}
"""


def handwritten_py(n: int, total: int) -> str:
    """The same workflow as a DAG file written by hand: the runtime's operators, built directly."""
    name = flow_name(n)
    params = "\n".join(
        f"        {key!r}: Param(type={kind!r}, title={key!r}, description={text!r}, pattern={pattern!r}),"
        for key, (kind, _, pattern, text) in INPUTS.items())
    return f'''"""Scores a card payment, tells the customer by SMS when the score is high and always by e-mail,
then pings the event bus. The hand-written counterpart of Logic App {name}
(generated by bench/logic_apps.py, {n} of {total})."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, Param

from demobank.logic_apps.runtime import (
    LogicAppConditionOperator,
    LogicAppEmailOperator,
    LogicAppEventOperator,
    LogicAppFunctionOperator,
    LogicAppSmsOperator,
)

RETRY_DELAY = timedelta(seconds=30)
EMAIL_RETRY_DELAY = timedelta(minutes=4)  # then 8, 16 min: past SendGrid's 10-minute settling of an unknown outcome
TRANSACTION = {TRANSACTION!r}

with DAG(
    dag_id="logic_app__{name}",
    description="Scores a card payment, tells the customer by SMS when the score is high and always by e-mail, "
                "then pings the event bus. Generated by bench/logic_apps.py ({n} of {total}).",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["logic-app", "bench"],
    params={{
{params}
        "amount": Param({_amount(n)!r}, type="number", title="amount", description="The payment's amount"),
        "currency": Param({_currency(n)!r}, type="string", title="currency", enum=["EUR", "USD", "GBP"]),
    }},
    default_args={{"owner": "integration-engineering", "retries": 2, "retry_delay": RETRY_DELAY,
                  "retry_exponential_backoff": True, "max_retry_delay": timedelta(minutes=30)}},
    render_template_as_native_obj=False,
):
    score = LogicAppFunctionOperator(task_id="score", function="risk_score",
                                     arguments={{"transaction": TRANSACTION}})
    amount_text = LogicAppFunctionOperator(
        task_id="amount_text", function="format_amount",
        arguments={{"amount": "{{{{ inputs.amount }}}}", "currency": "{{{{ inputs.currency }}}}"}})
    risky = LogicAppConditionOperator(task_id="risky", expression="steps.score.output >= 0.6", if_true=["sms"],
                                      if_false=[], outputs={{"score": "score"}})
    sms = LogicAppSmsOperator(task_id="sms", to="{{{{ inputs.phone }}}}", body={SMS_BODY!r},
                              outputs={{"amount_text": "amount_text"}})
    email = LogicAppEmailOperator(task_id="email", to="{{{{ inputs.email }}}}", subject={EMAIL_SUBJECT!r},
                                  html_content={EMAIL_BODY!r}, retry_delay=EMAIL_RETRY_DELAY,
                                  outputs={{"amount_text": "amount_text"}})
    ping = LogicAppEventOperator(task_id="ping", event_type="demobank.ping",
                                 data={{"message": "{name}: {{{{ inputs.customer_id }}}} notified on {{{{ ds }}}}"}},
                                 trigger_rule="none_failed")
    score >> risky >> sms
    amount_text >> [sms, email]
    [sms, email] >> ping
'''


def sequential_yaml(steps: int) -> str:
    lines = "\n".join(f"  - {{id: step_{i:02d}, type: function, function: noop}}" for i in range(1, steps + 1))
    return f"""# Generated by bench/logic_apps.py: {steps} no-op steps, one after the other.
name: {SEQUENTIAL_NAME}
description: {steps} no-op function steps, one after the other (bench/logic_apps.py).
owner: integration-engineering
tags: [bench]
trigger: {{type: manual}}
steps:
{lines}
"""


NOOP_FUNCTIONS = '''"""The no-op function of bench/logic_apps.py's sequential Logic App."""

from __future__ import annotations

from demobank.logic_apps.functions import function


@function
def noop() -> None:
    """Does nothing."""
    return None
'''


def handwritten_sequential_py(steps: int) -> str:
    return f'''"""{steps} no-op tasks, one after the other: the hand-written counterpart of bench/logic_apps.py's
Logic App {SEQUENTIAL_NAME} (written to a temporary DAG bundle for one benchmark run)."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import chain, dag, task


@dag(dag_id="{HANDWRITTEN_DAG_ID}", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False,
     tags=["bench"])
def {HANDWRITTEN_DAG_ID}():
    @task
    def noop() -> None:
        return None

    chain(*[noop.override(task_id=f"step_{{i:02d}}")() for i in range(1, {steps + 1})])


{HANDWRITTEN_DAG_ID}()
'''


# -- the parse measurements (children) ---------------------------------------------------------------------

_PARSE_CHILD = r'''
import json, os, sys, time
started = time.perf_counter()
spec = json.loads(sys.argv[1])
# What the DAG processor's parsing process has before it parses (it is forked from the manager, which imported
# these and pre-imports the airflow.* modules the file names: [dag_processor] parsing_pre_import_modules).
import importlib
import airflow.dag_processing.manager, airflow.dag_processing.processor  # noqa: E401
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
from airflow.utils.file import iter_airflow_imports
paths = [spec["path"]] if os.path.isfile(spec["path"]) else sorted(
    os.path.join(spec["path"], name) for name in os.listdir(spec["path"]) if name.endswith(".py"))
for path in paths:
    for module in iter_airflow_imports(path):
        importlib.import_module(module)
ready = time.perf_counter()
profiler = None
if spec.get("profile"):
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
bag = DagBag(dag_folder=spec["path"], bundle_path=spec["bundle"], bundle_name="bench")
if profiler is not None:
    profiler.disable()
    profiler.dump_stats(spec["profile"])
collected = time.perf_counter()
for dag in bag.dags.values():
    DagSerialization.to_dict(dag)
serialised = time.perf_counter()
print("BENCH-RESULT " + json.dumps({
    "setup": ready - started, "collect": collected - ready, "serialise": serialised - collected,
    "dagbag": sum(stat.duration.total_seconds() for stat in bag.dagbag_stats),
    "files": len(bag.dagbag_stats), "dags": len(bag.dags), "tasks": sum(len(d.tasks) for d in bag.dags.values()),
    "errors": {str(k): str(v)[:2000] for k, v in bag.import_errors.items()},
}), flush=True)
'''

_CHECK_CHILD = r'''
import json, sys
spec = json.loads(sys.argv[1])
from airflow.dag_processing.dagbag import DagBag
ours = DagBag(dag_folder=spec["loader"], bundle_path=spec["loader_bundle"], bundle_name="bench")
hand = DagBag(dag_folder=spec["handwritten"], bundle_path=spec["handwritten"], bundle_name="bench")
FIELDS = ("task_type", "trigger_rule", "retries", "retry_delay", "retry_exponential_backoff", "max_retry_delay",
          "owner", "pool", "outputs", "manual", "function",
          "arguments", "expression", "if_true", "if_false", "always", "to", "customer", "body", "subject",
          "html_content", "html", "event_type", "data", "idempotency_key", "twilio_conn_id", "sendgrid_conn_id")
def shape(dag):
    tasks = {}
    for task in dag.tasks:
        values = {name: repr(getattr(task, name, None)) for name in FIELDS}
        values["upstream"] = sorted(task.upstream_task_ids)
        tasks[task.task_id] = values
    params = {name: dag.params.get_param(name).dump() for name in dag.params}
    return {"tasks": tasks, "params": json.loads(json.dumps(params, default=str)),
            "schedule": type(dag.timetable).__name__, "tags": sorted(dag.tags), "catchup": dag.catchup,
            "start_date": str(dag.start_date),
            "render_native": dag.render_template_as_native_obj, "description": dag.description}
problems = []
if ours.import_errors or hand.import_errors:
    problems.append(f"import errors: {dict(ours.import_errors)} {dict(hand.import_errors)}")
if set(ours.dags) != set(hand.dags):
    problems.append(f"DAG ids differ: {sorted(ours.dags)} vs {sorted(hand.dags)}")
for dag_id in sorted(set(ours.dags) & set(hand.dags)):
    a, b = shape(ours.dags[dag_id]), shape(hand.dags[dag_id])
    for key in a:
        if a[key] != b[key]:
            if key == "tasks":
                for task_id in sorted(set(a["tasks"]) | set(b["tasks"])):
                    x, y = a["tasks"].get(task_id, {}), b["tasks"].get(task_id, {})
                    diff = {f: (x.get(f), y.get(f)) for f in set(x) | set(y) if x.get(f) != y.get(f)}
                    if diff:
                        problems.append(f"{dag_id}.{task_id}: {diff}")
            else:
                problems.append(f"{dag_id} {key}: {a[key]!r} vs {b[key]!r}")
print("BENCH-RESULT " + json.dumps({"dags": len(ours.dags), "problems": problems}), flush=True)
'''


@dataclass
class Workspace:
    """Temporary files of the parse part: the suite DB, Airflow's home, and one loader and one hand-written
    folder per count."""

    root: Path
    db_url: str = ""

    def env(self, loader_folder: Path | None = None) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("AIRFLOW", "DEMOBANK_"))}
        env.update({
            "AIRFLOW_HOME": str(self.root / "airflow-home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            # Airflow's default (30 s) would stop the loader's parse of large folders: measured, not cut
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "1200",
            "DEMOBANK_DB_URL": self.db_url,
            "PYTHONWARNINGS": "ignore",
        })
        if loader_folder is not None:
            env["DEMOBANK_LOGIC_APPS_DIR"] = str(loader_folder / "logic_apps")
            env["DEMOBANK_FUNCTIONS_DIR"] = str(loader_folder / "functions")
        return env

    def prepare(self) -> None:
        (self.root / "airflow-home").mkdir(parents=True)
        self.db_url = f"sqlite:///{self.root / 'suite.db'}"
        subprocess.run([sys.executable, "-m", "demobank.db", "upgrade"], check=True, cwd=PROJECT_DIR,
                       env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def loader_folder(self, count: int) -> Path:
        """A DAGs folder: the loader, ``count`` definitions, a copy of ``dags/functions/`` (as in ``dags/``)."""
        folder = self.root / f"loader-{count}"
        if not folder.exists():
            (folder / "logic_apps").mkdir(parents=True)
            shutil.copy(LOADER_FILE, folder / LOADER_FILE.name)
            shutil.copytree(FUNCTIONS_DIR, folder / "functions", ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy(PROJECT_DIR / "dags" / ".airflowignore", folder / ".airflowignore")
            for n in range(1, count + 1):
                (folder / "logic_apps" / f"{flow_name(n)}.yaml").write_text(definition_yaml(n, count))
        return folder

    def handwritten_folder(self, count: int) -> Path:
        folder = self.root / f"handwritten-{count}"
        if not folder.exists():
            folder.mkdir(parents=True)
            for n in range(1, count + 1):
                (folder / f"{flow_name(n)}.py").write_text(handwritten_py(n, count))
        return folder


def run_child(code: str, spec: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """A fresh interpreter running ``code``; its result, with ``wall`` (start to exit, seen from here)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], cwd=PROJECT_DIR, env=dict(env),
                          capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode or not lines:
        raise RuntimeError(f"a parse process exited with {done.returncode}:\n{done.stderr[-4000:]}")
    return {**json.loads(lines[-1].removeprefix(RESULT_PREFIX)), "wall": wall}


@dataclass
class Samples:
    """The measurements of one approach at one count."""

    label: str
    count: int
    dagbag: list[float] = field(default_factory=list)
    serialise: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    setup: list[float] = field(default_factory=list)
    dags: int = 0
    tasks: int = 0
    processes: int = 1  # processes one parse of everything takes
    extrapolated: bool = False
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, result: Mapping[str, Any]) -> None:
        self.dagbag.append(result["dagbag"])
        self.serialise.append(result["serialise"])
        self.wall.append(result["wall"])
        self.setup.append(result["setup"])
        self.dags, self.tasks = result["dags"], result["tasks"]
        self.errors.update(result["errors"])

    def totals(self, what: str) -> list[float]:
        """Per parse of all the workflows: per-file samples times the file count."""
        values = getattr(self, what)
        return [value * self.count for value in values] if self.extrapolated else list(values)


@dataclass
class CountResult:
    count: int
    ours: Samples
    hand_one: Samples
    hand_per_file: Samples
    ratios_one: list[float] = field(default_factory=list)  # ours / hand-written one process, per repetition
    ratios_wall_one: list[float] = field(default_factory=list)


def measure_parse(args: argparse.Namespace, workspace: Workspace) -> list[CountResult]:
    results = []
    for count in args.counts:
        loader, hand = workspace.loader_folder(count), workspace.handwritten_folder(count)
        ours = Samples("**ours: the loader** (`logic_apps_loader.py`, one file)", count)
        hand_one = Samples("hand-written `.py` files, one process (one DagBag over the folder)", count)
        hand_per_file = Samples(f"hand-written `.py` files, one process per file (the DAG processor's way; "
                                f"{args.per_file_sample} per repetition, x{count:,})", count, processes=count,
                                extrapolated=True)
        result = CountResult(count, ours, hand_one, hand_per_file)
        ours_spec = {"path": str(loader / LOADER_FILE.name), "bundle": str(loader)}
        hand_spec = {"path": str(hand), "bundle": str(hand)}
        progress(f"{count:,} definitions: warm-up (bytecode caches)")
        run_child(_PARSE_CHILD, ours_spec, workspace.env(loader))
        run_child(_PARSE_CHILD, hand_spec, workspace.env())
        files = sorted(hand.glob("*.py"))
        for rep in range(args.repeat):
            order = ["ours", "one", "per_file"]
            order = order[rep % 3:] + order[:rep % 3]
            measured: dict[str, dict[str, Any]] = {}
            for which in order:
                if which == "ours":
                    measured[which] = run_child(_PARSE_CHILD, ours_spec, workspace.env(loader))
                    ours.add(measured[which])
                elif which == "one":
                    measured[which] = run_child(_PARSE_CHILD, hand_spec, workspace.env())
                    hand_one.add(measured[which])
                else:
                    for k in range(args.per_file_sample):
                        path = files[(rep * args.per_file_sample + k) * 7919 % len(files)]
                        hand_per_file.add(run_child(_PARSE_CHILD, {"path": str(path), "bundle": str(hand)},
                                                    workspace.env()))
            result.ratios_one.append(measured["ours"]["dagbag"] / measured["one"]["dagbag"])
            result.ratios_wall_one.append(measured["ours"]["wall"] / measured["one"]["wall"])
            progress(f"{count:,} definitions, repetition {rep + 1}/{args.repeat}: loader "
                     f"{measured['ours']['dagbag']:.2f} s (wall {measured['ours']['wall']:.2f} s), hand-written "
                     f"{measured['one']['dagbag']:.2f} s (wall {measured['one']['wall']:.2f} s)")
        for samples in (ours, hand_one, hand_per_file):
            if samples.errors:
                raise RuntimeError(f"{samples.label}: import errors: {samples.errors}")
        results.append(result)
    return results


def check_equivalence(workspace: Workspace, count: int = 3) -> list[str]:
    """Untimed: the loader's DAGs and the hand-written ones of ``count`` workflows, compared task by task."""
    loader = workspace.root / "check-loader"
    hand = workspace.root / "check-handwritten"
    (loader / "logic_apps").mkdir(parents=True)
    hand.mkdir()
    shutil.copy(LOADER_FILE, loader / LOADER_FILE.name)
    for n in range(1, count + 1):
        (loader / "logic_apps" / f"{flow_name(n)}.yaml").write_text(definition_yaml(n, count))
        (hand / f"{flow_name(n)}.py").write_text(handwritten_py(n, count))
    result = run_child(_CHECK_CHILD, {"loader": str(loader / LOADER_FILE.name), "loader_bundle": str(loader),
                                      "handwritten": str(hand)}, workspace.env(loader))
    if result["dags"] != count:
        return [f"the loader built {result['dags']} of {count} DAGs", *result["problems"]]
    return list(result["problems"])


def profile_loader(workspace: Workspace, count: int) -> list[tuple[str, float, float]]:
    """Untimed cProfile of the loader's parse: (function, cumulative s, own s) of the parts that matter."""
    loader = workspace.loader_folder(count)
    out = workspace.root / f"loader-{count}.prof"
    run_child(_PARSE_CHILD, {"path": str(loader / LOADER_FILE.name), "bundle": str(loader), "profile": str(out)},
              workspace.env(loader))
    stats = pstats.Stats(str(out))
    rows: list[tuple[str, float, float]] = []
    for (filename, line, function), (_, _, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((f"{_short(filename)}:{line}({function})", cumulative, own))
    return rows


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


PROFILE_PARTS = (  # (key, what, file, function): cumulative seconds (cProfile counts a recursion once)
    ("total", "the whole DagBag (profiled: slower than unprofiled)", "dag_processing/dagbag.py", "collect_dags"),
    ("imports", "imports during the parse (modules not loaded before: the operators, pydantic models, ...)",
     "<frozen importlib._bootstrap>", "_find_and_load"),
    ("functions", "`load_functions` (the functions folder)", "demobank/logic_apps/library.py", "load_functions"),
    ("catalog", "the event catalog (`get_catalog`)", "demobank/events/catalog.py", "get_catalog"),
    ("check", "`check_files`: read and validate every definition", "demobank/logic_apps/validate.py", "check_files"),
    ("read", "  of which `read_definition` (the YAML and the pydantic model)", "demobank/logic_apps/definition.py",
     "read_definition"),
    ("pydantic", "  of which the pydantic model (`Workflow.model_validate`)", "pydantic/main.py", "model_validate"),
    ("meaning", "  of which the checks of its meaning (`_Checker.run`: functions, events, templates)",
     "demobank/logic_apps/validate.py", "run"),
    ("deployed", "`_deployed_versions` (the suite DB)", "demobank/logic_apps/loader.py", "_deployed_versions"),
    ("build", "`build_dag` (the DAGs and operators)", "demobank/logic_apps/loader.py", "build_dag"),
    ("operators", "  of which the operators' constructors (`apply_defaults`)", "airflow/sdk/bases/operator.py",
     "apply_defaults"),
    ("reads", "  of which `_reads` (every template parsed by Jinja again, for the steps it reads)",
     "demobank/logic_apps/loader.py", "_reads"),
    ("references", "template references, both passes (`validate.references`: Jinja's parser)",
     "demobank/logic_apps/validate.py", "references"),
    ("stack", "`_import_result` (`inspect.stack` to find Airflow's import result)", "demobank/logic_apps/loader.py",
     "_import_result"),
)


def profile_breakdown(rows: Sequence[tuple[str, float, float]]) -> dict[str, tuple[str, float]]:
    found = {}
    for key, label, path, function in PROFILE_PARTS:
        matches = [cumulative for name, cumulative, _ in rows if path in name and name.endswith(f"({function})")]
        if matches:
            found[key] = (label, sum(matches))
    return found


def top_own(rows: Sequence[tuple[str, float, float]], n: int = 10) -> list[tuple[str, float]]:
    return [(name, own) for name, _, own in sorted(rows, key=lambda row: -row[2])[:n]]


# -- the live part -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass
class LiveRunResult:
    dag_id: str
    run_id: str
    state: str
    duration: float  # end_date - start_date
    queued_to_start: float
    task_seconds: float  # the tasks' own durations, summed
    first_task_after: float  # run start -> first task start
    gaps: list[float] = field(default_factory=list)  # a task's end -> the next one's start

    @property
    def between_tasks(self) -> float:
        return sum(self.gaps)


def trigger_and_wait(platform: Any, dag_id: str) -> LiveRunResult:
    api = platform.api_url
    run_id = f"bench__{uuid.uuid4().hex[:12]}"
    for attempt in range(5):  # a busy SQLite metadata DB can answer 500 once in a while; 409: the run exists
        response = platform.session.post(f"{api}/api/v2/dags/{dag_id}/dagRuns",
                                         json={"dag_run_id": run_id, "logical_date": None}, timeout=120)
        if response.status_code < 300 or response.status_code == 409:
            break
        progress(f"live: POST /api/v2/dags/{dag_id}/dagRuns answered {response.status_code} "
                 f"(attempt {attempt + 1}): {response.text[:300]}")
        time.sleep(5)
    else:
        raise RuntimeError(f"POST /api/v2/dags/{dag_id}/dagRuns: {response.status_code} {response.text[:2000]}")
    deadline = time.monotonic() + RUN_TIMEOUT
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = platform.session.get(f"{api}/api/v2/dags/{dag_id}/dagRuns/{run_id}", timeout=60).json()
        if run.get("state") in ("success", "failed"):
            break
        time.sleep(1)
    else:
        raise RuntimeError(f"{dag_id} run {run_id} did not finish within {RUN_TIMEOUT:.0f} s: {run}")
    tis = platform.session.get(f"{api}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                               params={"limit": 1000}, timeout=60).json()["task_instances"]
    tis = sorted((ti for ti in tis if ti.get("start_date")), key=lambda ti: ti["start_date"])
    start, end, queued = _when(run["start_date"]), _when(run["end_date"]), _when(run.get("queued_at"))
    assert start is not None and end is not None
    gaps = [((_when(b["start_date"]) or start) - (_when(a["end_date"]) or start)).total_seconds()
            for a, b in itertools.pairwise(tis)]
    return LiveRunResult(
        dag_id, run_id, run["state"], (end - start).total_seconds(),
        (start - queued).total_seconds() if queued else float("nan"),
        sum(float(ti.get("duration") or 0.0) for ti in tis),
        ((_when(tis[0]["start_date"]) or start) - start).total_seconds() if tis else float("nan"), gaps)


@dataclass
class LiveResults:
    steps: int
    boot_seconds: float
    runs: list[LiveRunResult]
    definitions: int = 0
    problems: list[str] = field(default_factory=list)

    def of(self, dag_id: str) -> list[LiveRunResult]:
        return [run for run in self.runs if run.dag_id == dag_id]

    def ratio(self) -> float:
        ours = [run.duration for run in self.of(f"logic_app__{SEQUENTIAL_NAME}")]
        hand = [run.duration for run in self.of(HANDWRITTEN_DAG_ID)]
        return median(ours) / median(hand) if ours and hand else float("nan")


def _wait_for_dags(platform: Any, dag_ids: Sequence[str]) -> None:
    deadline = time.monotonic() + REGISTER_TIMEOUT
    missing = list(dag_ids)
    while time.monotonic() < deadline:
        missing = []
        for dag_id in dag_ids:
            response = platform.session.get(f"{platform.api_url}/api/v2/dags/{dag_id}", timeout=60)
            if response.status_code != 200 or response.json().get("is_paused"):
                missing.append(dag_id)
        if not missing:
            return
        time.sleep(3)
    errors = platform.session.get(f"{platform.api_url}/api/v2/importErrors", timeout=60).json()
    raise RuntimeError(f"DAGs not registered (or paused) after {REGISTER_TIMEOUT:.0f} s: {missing}; import "
                       f"errors: {json.dumps(errors)[:3000]}")


def measure_live(args: argparse.Namespace, root: Path) -> LiveResults:
    from _live_platform import LivePlatform

    folder = root / "live"
    logic_apps, functions, bundle = folder / "logic-apps", folder / "functions", folder / "handwritten-dags"
    for path in (logic_apps, functions, bundle):
        path.mkdir(parents=True)
    for example in EXAMPLES_DIR.glob("*.yaml"):
        shutil.copy(example, logic_apps / example.name)
    (logic_apps / f"{SEQUENTIAL_NAME}.yaml").write_text(sequential_yaml(args.steps))
    for source in FUNCTIONS_DIR.glob("*.py"):
        shutil.copy(source, functions / source.name)
    (functions / "bench_noop.py").write_text(NOOP_FUNCTIONS)
    (bundle / f"{HANDWRITTEN_DAG_ID}.py").write_text(handwritten_sequential_py(args.steps))
    bundles = [{"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {}},
               {"name": "bench-handwritten", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(bundle)}}]
    platform = LivePlatform(folder)
    progress(f"live: starting make run's launcher in {folder} (log: {platform.output})")
    with environ(DEMOBANK_LOGIC_APPS_DIR=str(logic_apps), DEMOBANK_FUNCTIONS_DIR=str(functions),
                 AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST=json.dumps(bundles)):
        boot = platform.start()
    try:
        progress(f"live: up after {boot:.0f} s; waiting for its start-up work and the two DAGs")
        platform.wait_until_idle()
        ours_id = f"logic_app__{SEQUENTIAL_NAME}"
        _wait_for_dags(platform, [ours_id, HANDWRITTEN_DAG_ID])
        results = LiveResults(args.steps, boot, [], definitions=len(list(logic_apps.glob("*.yaml"))))
        for rep in range(args.live_repeat):
            order = [ours_id, HANDWRITTEN_DAG_ID] if rep % 2 == 0 else [HANDWRITTEN_DAG_ID, ours_id]
            for dag_id in order:
                run = trigger_and_wait(platform, dag_id)
                results.runs.append(run)
                progress(f"live: {dag_id} run {rep + 1}/{args.live_repeat}: {run.state}, {run.duration:.1f} s "
                         f"(tasks {run.task_seconds:.1f} s, between tasks {run.between_tasks:.1f} s)")
                if run.state != "success":
                    results.problems.append(f"{dag_id} run {run.run_id} ended {run.state}")
        return results
    finally:
        platform.stop()


# -- the report --------------------------------------------------------------------------------------------


@dataclass
class Results:
    args: argparse.Namespace
    parse: list[CountResult]
    equivalence: list[str]
    profile: list[tuple[str, float, float]]
    live: LiveResults | None
    live_skipped: str = ""
    code: tuple[str, str] = ("unknown", "")
    code_changed: bool = False

    def parse_target(self) -> CountResult | None:
        return next((r for r in self.parse if r.count == PARSE_TARGET_COUNT), None)

    def failures(self) -> list[str]:
        missed = []
        target = self.parse_target()
        if target is not None and median(target.ours.dagbag) >= PARSE_TARGET:
            missed.append(f"{PARSE_TARGET_COUNT} definitions took {median(target.ours.dagbag):.2f} s to parse through "
                          f"the loader (target: under {PARSE_TARGET:.0f} s)")
        if self.equivalence:
            missed.append("the loader's DAGs and the hand-written ones differ: " + "; ".join(self.equivalence[:5]))
        if self.code_changed:
            missed.append("the Logic Apps code changed on disk during the run: the figures mix two versions")
        if self.args.live and self.live is None:
            missed.append(f"the live part did not complete ({self.live_skipped})")
        if self.live is not None:
            missed += self.live.problems
            if not self.live.ratio() <= LIVE_TARGET:
                missed.append(f"the {self.live.steps}-step Logic App ran {self.live.ratio():.2f}x the hand-written "
                              f"DAG's time (target: within {LIVE_TARGET - 1:.0%})")
        return missed

    def markdown(self, command: str) -> str:
        missed = self.failures()
        verdict = "**all targets met**" if not missed else "**missed:** " + "; ".join(missed)
        title = (f"## logic_apps — Logic Apps: the loader's parse time and a {self.args.steps}-step run, against "
                 "hand-written DAGs")
        sections = [f"""{title}

Requirement: {PARSE_TARGET_COUNT} definitions parse through the loader in under {PARSE_TARGET:.0f} s; a
{self.args.steps}-step sequential Logic App runs within {LIVE_TARGET - 1:.0%} of the same DAG written by hand in a
live `make run`. Both side by side with the hand-written DAGs in one run.

- Command: `{command}` (`make bench` runs every `bench/*.py`); `--quick` for a smoke run.
- Machine: {machine()}.
- Code measured: commit `{self.code[0]}` (Logic Apps code sha256 `{self.code[1]}`{", **changed during the run**"
                                                                           if self.code_changed else ""}).
- Result: {verdict}."""]
        for result in self.parse:
            sections.append(self._parse_section(result))
        sections.append(self._profile_section())
        sections.append(self._live_section())
        return "\n\n".join(section for section in sections if section)

    def _parse_section(self, result: CountResult) -> str:
        ours_parse = median(result.ours.dagbag)
        rows = []
        for samples in (result.ours, result.hand_one, result.hand_per_file):
            parse = samples.totals("dagbag")
            wall = samples.totals("wall")
            rows.append([
                samples.label, f"{samples.count:,}", f"{samples.processes:,}",
                f"{samples.dags * (samples.count if samples.extrapolated else 1):,}",
                f"{samples.tasks * (samples.count if samples.extrapolated else 1):,}",
                spread(parse, 2), spread(samples.totals("serialise"), 2), spread(wall, 2),
                f"{ours_parse / median(parse):.2f}x" if samples is not result.ours else "1",
                f"{median(result.ours.wall) / median(wall):.2f}x" if samples is not result.ours else "1",
            ])
        table = markdown_table(["approach", "workflows", "processes", "DAGs", "tasks",
                                "DagBag parse s, median (min-max)", "serialise s", "process wall s",
                                "ours / this (parse)", "ours / this (wall)"], rows)
        per_file = median(result.hand_per_file.dagbag)
        per_file_wall = median(result.hand_per_file.wall)
        note = ""
        if result.count == PARSE_TARGET_COUNT:
            state = "**PASS**" if ours_parse < PARSE_TARGET else "**FAIL**"
            note = (f"\n\nTarget: {result.count} definitions through the loader in under {PARSE_TARGET:.0f} s "
                    f"(DagBag parse time, median): {ours_parse:.2f} s, {state}.")
        timeout = ""
        slowest = max(result.ours.dagbag)
        if slowest > 30:
            timeout = (f" Airflow's default `[core] dagbag_import_timeout` is 30 s: at {result.count:,} definitions "
                       f"the loader's one file ({slowest:.0f} s at most here) would be cut off with that default; "
                       f"`make run` sets 150 s.")
        return f"""### Parse time: {result.count:,} workflows

{table}

Per repetition, the loader's DagBag time was {spread(result.ratios_one, 2)}x the hand-written files' in one process
(wall {spread(result.ratios_wall_one, 2)}x). One hand-written file in its own process: {per_file:.3f} s to parse
(median of {len(result.hand_per_file.dagbag)}: the file's first import of `demobank.logic_apps.runtime`, with the
Connect operators, and its DAG), {per_file_wall:.2f} s of process wall time (a fresh interpreter; the DAG
processor forks its parsing processes from a manager that has Airflow imported, so its cost per file is nearer the
parse time). The DAG processor pays that per file, {result.count:,} times (spread over `[dag_processor]
parsing_processes`, 2 by default), where it parses the loader's one file once: that is the total in the third row,
against the first.{timeout}{note}"""

    def _profile_section(self) -> str:
        if not self.profile:
            return ""
        breakdown = profile_breakdown(self.profile)
        lines = "\n".join(f"| {label} | {seconds:.2f} |" for label, seconds in breakdown.values())

        def share(*keys: str) -> float:
            total = breakdown.get("total", ("", 0.0))[1]
            return sum(breakdown.get(key, ("", 0.0))[1] for key in keys) / total if total else 0.0

        pure_yaml = sum(own for name, _, own in self.profile if name.startswith("yaml/scanner.py"))
        meaning = (f"Under the profiler: reading the definitions (YAML and the pydantic model) is {share('read'):.0%} "
                   f"of the loader's parse; Jinja's parser (template references: once in the validator, again in "
                   f"the loader's `_reads`) {share('references'):.0%}; the operators' constructors, which a "
                   f"hand-written file pays too, {share('operators'):.0%}; imports {share('imports'):.0%}; the "
                   f"deployed versions (one query) {share('deployed'):.0%}.")
        if pure_yaml > 0.05 * breakdown.get("total", ("", 1.0))[1]:
            meaning += (f" The pure-Python YAML scanner alone took {pure_yaml:.2f} s: libyaml's `CSafeLoader` "
                        f"would do it in a fraction.")
        own = "\n".join(f"| `{name}` | {seconds:.2f} |" for name, seconds in top_own(self.profile))
        count = self.args.counts[0]
        return f"""### Where the loader's parse time goes ({count:,} definitions, one untimed cProfile run)

| part (cumulative, seconds under the profiler) | s |
|---|---|
{lines}

{meaning}

Most time spent in a function itself (top 10):

| function | own s |
|---|---|
{own}"""

    def _live_section(self) -> str:
        if self.live is None:
            return f"### {self.args.steps} sequential steps in `make run`\n\nNot run this time ({self.live_skipped})."
        live = self.live
        ours_id = f"logic_app__{SEQUENTIAL_NAME}"
        rows = []
        hand_median = median([run.duration for run in live.of(HANDWRITTEN_DAG_ID)]) if live.of(HANDWRITTEN_DAG_ID) \
            else float("nan")
        labels = {ours_id: f"**ours: Logic App `{SEQUENTIAL_NAME}`** ({live.steps} `function` steps, `noop`)",
                  HANDWRITTEN_DAG_ID: f"hand-written `{HANDWRITTEN_DAG_ID}` ({live.steps} `@task` no-ops, "
                                      "`chain`)"}
        for dag_id in (ours_id, HANDWRITTEN_DAG_ID):
            runs = live.of(dag_id)
            if not runs:
                continue
            durations = [run.duration for run in runs]
            rows.append([labels[dag_id], len(runs), ", ".join(f"{d:.1f}" for d in durations), spread(durations, 1),
                         f"{median(durations) / live.steps:.2f}", spread([r.queued_to_start for r in runs], 1),
                         spread([r.task_seconds for r in runs], 1), spread([r.between_tasks for r in runs], 1),
                         f"{median(durations) / hand_median:.2f}x" if dag_id == ours_id else "1"])
        rows.append([f"published reference: Airflow 2.7.3, {live.steps} lightweight sequential tasks, 2 vCPUs", "",
                     "", f"{REFERENCE_SECONDS:.0f}", f"{REFERENCE_SECONDS / 40:.2f}", "", "", "", ""])
        table = markdown_table(["DAG", "runs", "each run s (in order)", "run s, median (min-max)", "s per task",
                                "queued → start s", "tasks' own durations s", "between tasks s",
                                "ours / hand-written"], rows)
        ratio = live.ratio()
        state = "**PASS**" if ratio <= LIVE_TARGET else "**FAIL**"
        ours_runs = live.of(ours_id)
        hand_runs = live.of(HANDWRITTEN_DAG_ID)
        per_task = (median([r.task_seconds for r in ours_runs]) - median([r.task_seconds for r in hand_runs])) \
            / live.steps if ours_runs and hand_runs else float("nan")
        gaps = (median([r.between_tasks for r in ours_runs]) - median([r.between_tasks for r in hand_runs])) \
            if ours_runs and hand_runs else float("nan")
        return f"""### {live.steps} sequential steps in `make run`

`make run`'s launcher in a temporary home (up in {live.boot_seconds:.0f} s, then left until its own start-up work
was done), `DEMOBANK_LOGIC_APPS_DIR` = a temporary folder with the {live.steps}-step definition and copies of the
examples, `DEMOBANK_FUNCTIONS_DIR` = a copy of `dags/functions/` plus `noop`; the hand-written DAG in a second,
temporary DAG bundle (nothing written under `dags/`). Each DAG triggered {self.args.live_repeat} times, alternately
(ours first in odd rounds), one run at a time, through `POST /api/v2/dags/{{id}}/dagRuns` with a null logical date;
a run's time is `end_date - start_date` from the REST API.

{table}

Target: ours within {LIVE_TARGET - 1:.0%} of the hand-written DAG's median: {ratio:.2f}x, {state}.
Columns: **tasks' own durations**: the task instances' `duration`, summed (each task process: start, parse the DAG
file, run, report); **between tasks**: a task's end to the next one's start, summed (the scheduler noticing the
end and queueing the next, the executor starting its process). Per task, ours spends {per_task:.2f} s more in
its own duration than the hand-written one, most likely the DAG file's parse in each task process: ours is the
loader, which reads and validates every definition of the folder ({live.definitions} here) before it finds the
task. Its gaps between tasks differed by {gaps:+.1f} s in all ({gaps / max(live.steps - 1, 1):+.2f} s per gap), so
the runs differ by less than the tasks' own time; the target compares the runs' durations."""


# -- main --------------------------------------------------------------------------------------------------


def code_state() -> tuple[str, str]:
    """The commit, and a digest of the measured code as it is on disk (the loader, the Logic Apps package)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted([LOADER_FILE, *(PROJECT_DIR / "src" / "demobank" / "logic_apps").glob("*.py")]):
        digest.update(path.read_bytes())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True,
                            text=True).stdout.strip()
    return commit or "unknown", digest.hexdigest()[:12]


def run(args: argparse.Namespace) -> Results:
    before = code_state()
    with contextlib.ExitStack() as stack:
        if args.keep:
            root = Path(tempfile.mkdtemp(prefix="bench-logic-apps-"))
            progress(f"keeping {root}")
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-logic-apps-")))
        workspace = Workspace(root)
        progress("parse: migrating a temporary suite database")
        workspace.prepare()
        progress("parse: checking that the loader's DAGs and the hand-written ones are the same")
        equivalence = check_equivalence(workspace)
        for problem in equivalence:
            progress(f"  differs: {problem}")
        parse = measure_parse(args, workspace)
        profile = profile_loader(workspace, args.counts[0]) if args.profile else []
        live = None
        skipped = "`--no-live`" if not args.live else ""
        if args.live:
            try:
                live = measure_live(args, root)
            except Exception as error:  # the parse figures are still reported
                progress(f"live: failed: {error}")
                skipped = f"it failed: {str(error)[:1000]}"
        results = Results(args, parse, equivalence, profile, live, skipped, code=before)
        if code_state()[1] != before[1]:
            results.code_changed = True
        return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    results = run(args)
    shown = " ".join(sys.argv[1:]) if argv is None else " ".join(argv)
    command = f"flock /tmp/demobank-e2e.lock .venv/bin/python bench/{NAME}.py" + (f" {shown}" if shown else "")
    return finish(NAME, results.markdown(command), results.failures(), write=args.write, started=started)


if __name__ == "__main__":
    sys.exit(main())

