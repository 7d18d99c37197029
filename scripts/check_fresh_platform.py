"""Start a fresh `make run` (new home, free ports), leave it alone for some minutes, then report what it did on
its own: every DAG run by state (and the failed ones with their failed tasks), and the suite's health (dead
deliveries, rejected Monte Carlo reports, paused targets). Exit status 1 if a run failed or the suite is unhealthy.

    .venv/bin/python scripts/check_fresh_platform.py --minutes 10

Needs nothing but the project (`make install`); the platform is stopped with Ctrl-C at the end, as a user would.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests

PROJECT_DIR = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to leave it alone (default: 10)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="demobank-fresh-")) / "airflow-home"
    api_port, moto_port = free_port(), free_port()
    env = {**os.environ, "DEMOBANK_HOME": str(home), "DEMOBANK_API_PORT": str(api_port),
           "DEMOBANK_MOTO_PORT": str(moto_port)}
    for name in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER"):
        env.pop(name, None)
    log_path = home.parent / "make-run.log"
    base = f"http://127.0.0.1:{api_port}"
    with log_path.open("w") as out:
        process = subprocess.Popen(["make", "run"], cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        started = time.monotonic()
        while "is up (healthy after" not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() - started > 600:
                print(f"make run did not come up:\n{log_path.read_text(errors='replace')[-3000:]}")
                return 1
            time.sleep(2)
        print(f"make run up after {time.monotonic() - started:.0f} s (home {home}); leaving it alone for "
              f"{args.minutes:g} min", flush=True)
        time.sleep(args.minutes * 60)
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": "admin"},
                              timeout=30).json()["access_token"]
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        runs = session.get(f"{base}/api/v2/dags/~/dagRuns", params={"limit": 1000}, timeout=60).json()["dag_runs"]
        states = Counter((run["dag_id"], run["run_type"], run["state"]) for run in runs)
        print(f"\n{len(runs)} DAG run(s) in {args.minutes:g} min:")
        for (dag_id, run_type, state), count in sorted(states.items()):
            print(f"  {dag_id:32} {run_type:16} {state:10} {count}")
        failed = [run for run in runs if run["state"] == "failed"]
        for run in failed:
            tasks = session.get(f"{base}/api/v2/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances",
                                timeout=60).json()["task_instances"]
            bad = [f"{t['task_id']} ({t['state']})" for t in tasks if t["state"] not in ("success", "skipped")]
            print(f"  FAILED {run['dag_id']} {run['dag_run_id']}: {', '.join(bad)}")
        health = session.get(f"{base}/demobank/api/v1/health", timeout=60)
        body = health.json()
        print(f"\nsuite health ({health.status_code}): {body}")
        ok = not failed and bool(body.get("ok"))
        print("\nRESULT:", "no run failed, nothing dead" if ok else "NOT CLEAN")
        return 0 if ok else 1
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
