"""Run the sandbox standalone: ``python -m demobank.sandbox --host 127.0.0.1 --port 8099 [--db PATH]``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from demobank.sandbox.app import create_app
from demobank.sandbox.settings import SandboxSettings


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser.

    :return: the parser.
    """
    parser = argparse.ArgumentParser(
        prog="python -m demobank.sandbox",
        description="Serve the Twilio / SendGrid / Monte Carlo sandbox (development and tests only).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8099, help="port to bind (default 8099)")
    parser.add_argument(
        "--db", type=Path, default=None, help="SQLite file (default $DEMOBANK_SANDBOX_DB or ./.airflow/sandbox.db)"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the SQLite file")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments and serve until interrupted.

    :param argv: arguments (``sys.argv[1:]`` if None).
    """
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        raise SystemExit(f"--workers must be at least 1, got {args.workers}.")
    if args.db is not None:
        # Worker processes build their own app from the environment, so pass the file that way.
        os.environ["DEMOBANK_SANDBOX_DB"] = str(args.db.resolve())
    settings = SandboxSettings.from_env()
    print(f"demobank sandbox: http://{args.host}:{args.port}  (records to {settings.db_path})", flush=True)
    if args.workers == 1:
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    else:
        uvicorn.run(
            "demobank.sandbox.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
        )


if __name__ == "__main__":
    main()
