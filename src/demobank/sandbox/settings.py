"""Settings of the vendor sandbox, read from environment variables.

Every default below is a local development value for the sandbox only: none of them is, or looks like, a
real credential. Point the suite's connections at the sandbox with exactly these values (or override them
with the environment variables listed in :class:`SandboxSettings`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

#: Default Twilio Account SID accepted by the sandbox (sandbox value: "AC" followed by 32 zeros).
DEFAULT_TWILIO_ACCOUNT_SID = "AC" + "0" * 32  # sandbox value, not a real account
#: Default Twilio auth token accepted by the sandbox.
DEFAULT_TWILIO_AUTH_TOKEN = "sandbox-twilio-auth-token"  # noqa: S105  sandbox value, not a secret
#: Default SendGrid API key accepted by the sandbox.
DEFAULT_SENDGRID_API_KEY = "SG.sandbox-key"  # sandbox value, not a secret
#: Default Monte Carlo API key id (``x-mcd-id``) accepted by the sandbox.
DEFAULT_MCD_ID = "sandbox-mcd-id"  # sandbox value
#: Default Monte Carlo API token (``x-mcd-token``) accepted by the sandbox.
DEFAULT_MCD_TOKEN = "sandbox-mcd-token"  # noqa: S105  sandbox value, not a secret
#: Default bearer token of the demo core banking customer API (sandbox value).
DEFAULT_CORE_BANKING_TOKEN = "sandbox-core-banking-token"  # noqa: S105  sandbox value, not a secret
#: SendGrid's documented limit for the whole v3 mail send request (30 MB).
DEFAULT_SENDGRID_MAX_BODY_BYTES = 30 * 1024 * 1024

TWILIO_ACCOUNT_SID_RE = re.compile(r"^AC[0-9a-fA-F]{32}$")

#: Environment variable -> settings field.
ENV_VARS: dict[str, str] = {
    "DEMOBANK_SANDBOX_DB": "db_path",
    "DEMOBANK_SANDBOX_TWILIO_ACCOUNT_SID": "twilio_account_sid",
    "DEMOBANK_SANDBOX_TWILIO_AUTH_TOKEN": "twilio_auth_token",
    "DEMOBANK_SANDBOX_SENDGRID_API_KEY": "sendgrid_api_key",
    "DEMOBANK_SANDBOX_SENDGRID_MAX_BODY_BYTES": "sendgrid_max_body_bytes",
    "DEMOBANK_SANDBOX_MCD_ID": "mcd_id",
    "DEMOBANK_SANDBOX_MCD_TOKEN": "mcd_token",
    "DEMOBANK_SANDBOX_CORE_BANKING_URL": "core_banking_url",
    "DEMOBANK_SANDBOX_CORE_BANKING_TOKEN": "core_banking_token",
}


def default_db_path() -> Path:
    """Return the default SQLite file of the sandbox: ``<cwd>/.airflow/sandbox.db``.

    :return: the path (not created here).
    """
    return Path.cwd() / ".airflow" / "sandbox.db"


@dataclass(frozen=True)
class SandboxSettings:
    """What the sandbox accepts and where it records.

    ``SandboxSettings()`` gives the documented development defaults and ignores the environment;
    :meth:`from_env` applies these environment variables on top of them:

    ========================================== ====================================================
    ``DEMOBANK_SANDBOX_DB``                     SQLite file (default ``<cwd>/.airflow/sandbox.db``)
    ``DEMOBANK_SANDBOX_TWILIO_ACCOUNT_SID``     accepted Account SID (default ``AC`` + 32 zeros)
    ``DEMOBANK_SANDBOX_TWILIO_AUTH_TOKEN``      accepted auth token (default
                                                ``sandbox-twilio-auth-token``)
    ``DEMOBANK_SANDBOX_SENDGRID_API_KEY``       accepted API key (default ``SG.sandbox-key``)
    ``DEMOBANK_SANDBOX_SENDGRID_MAX_BODY_BYTES`` largest accepted mail send body (default 30 MB)
    ``DEMOBANK_SANDBOX_MCD_ID``                 accepted ``x-mcd-id`` (default ``sandbox-mcd-id``)
    ``DEMOBANK_SANDBOX_MCD_TOKEN``              accepted ``x-mcd-token`` (default ``sandbox-mcd-token``)
    ``DEMOBANK_SANDBOX_CORE_BANKING_URL``       SQLAlchemy URL of the core banking source the demo customer API
                                                reads (default ``core_banking.db`` beside the SQLite file)
    ``DEMOBANK_SANDBOX_CORE_BANKING_TOKEN``     accepted bearer token of that API (default
                                                ``sandbox-core-banking-token``)
    ========================================== ====================================================

    :param db_path: SQLite file where accepted requests and fault settings are stored.
    :param twilio_account_sid: the only Account SID the Twilio routes accept (``AC`` + 32 hex digits).
    :param twilio_auth_token: the auth token that goes with it (HTTP Basic password).
    :param sendgrid_api_key: the only API key the SendGrid routes accept (``Authorization: Bearer``).
    :param sendgrid_max_body_bytes: mail send bodies larger than this are answered 413.
    :param mcd_id: the Monte Carlo API key id expected in ``x-mcd-id``.
    :param mcd_token: the Monte Carlo API token expected in ``x-mcd-token``.
    :param core_banking_url: SQLAlchemy URL of the core banking source database ("": ``core_banking.db`` in the
        folder of ``db_path``).
    :param core_banking_token: the bearer token the demo core banking API accepts.
    :raises ValueError: if a value is malformed (the message names the value and the fix).
    """

    db_path: Path = field(default_factory=default_db_path)
    twilio_account_sid: str = DEFAULT_TWILIO_ACCOUNT_SID
    twilio_auth_token: str = DEFAULT_TWILIO_AUTH_TOKEN
    sendgrid_api_key: str = DEFAULT_SENDGRID_API_KEY
    sendgrid_max_body_bytes: int = DEFAULT_SENDGRID_MAX_BODY_BYTES
    mcd_id: str = DEFAULT_MCD_ID
    mcd_token: str = DEFAULT_MCD_TOKEN
    core_banking_url: str = ""
    core_banking_token: str = DEFAULT_CORE_BANKING_TOKEN

    def __post_init__(self) -> None:
        object.__setattr__(self, "db_path", Path(self.db_path))
        if not TWILIO_ACCOUNT_SID_RE.match(self.twilio_account_sid):
            raise ValueError(
                f"Sandbox Twilio account SID {self.twilio_account_sid!r} is malformed: it must be 'AC' "
                "followed by 32 hexadecimal digits (like Twilio's). Fix DEMOBANK_SANDBOX_TWILIO_ACCOUNT_SID "
                "or leave it unset for the default."
            )
        for name in ("twilio_auth_token", "sendgrid_api_key", "mcd_id", "mcd_token", "core_banking_token"):
            if not getattr(self, name):
                raise ValueError(
                    f"Sandbox setting {name} is empty: every vendor route needs a credential to check. "
                    f"Set DEMOBANK_SANDBOX_{name.upper()} to a non-empty value or leave it unset."
                )
        if self.sendgrid_max_body_bytes <= 0:
            raise ValueError(
                f"Sandbox setting sendgrid_max_body_bytes={self.sendgrid_max_body_bytes} must be a positive "
                "number of bytes (SendGrid's own limit is 31457280, i.e. 30 MB)."
            )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> SandboxSettings:
        """Build settings from the environment, then apply explicit ``overrides``.

        :param environ: mapping to read instead of :data:`os.environ` (for tests).
        :param overrides: field values that win over the environment.
        :return: the settings.
        :raises ValueError: if a variable is malformed.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var, name in ENV_VARS.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            if name == "sendgrid_max_body_bytes":
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise ValueError(
                        f"{var}={raw!r} is not an integer: give the limit in bytes, e.g. 31457280 for 30 MB."
                    ) from None
            elif name == "db_path":
                values[name] = Path(raw).expanduser()
            else:
                values[name] = raw
        values.update(overrides)
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> SandboxSettings:
        """Return a copy with some fields replaced.

        :param overrides: field values to replace.
        :return: the new settings.
        :raises TypeError: for an unknown field name.
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"Unknown sandbox setting(s) {unknown}; known settings are {sorted(known)}.")
        return replace(self, **overrides)
