"""The event catalog: one versioned JSON Schema per event type, loaded from ``include/events``.

Layout (see ``include/events/README.md``)::

    include/events/transaction.created/v1.schema.json
    include/events/transaction.created/v2.schema.json   (a later, incompatible or extended version)
    include/events/customer.created/v1.schema.json
    ...

Each file is a JSON Schema draft 2020-12 with ``$id`` = ``https://schemas.demobank.com/events/<type>/v<N>.schema.json``
(the envelope's ``dataschema``), ``title``, ``description``, valid payloads under ``examples`` and
``"x-demobank-api-publishing": true | false``: whether the type may be published through the suite's API
(``POST /demobank/api/v1/events``); a closed type also says who publishes it (``"x-demobank-published-by"``), which
the API's refusal quotes. The flag is per type: every version of a type must have the same. The catalog is
loaded once per process and folder, checked as a whole (every schema valid, its ``$id`` matching its file, every
example valid, only checked formats used) and its validators compiled; a broken catalog raises
:class:`CatalogError` at load, not at the first publish of the broken type.

:func:`validate` checks an event's data and raises :class:`EventValidationError` whose message names every bad
field by its path (``data.merchant.category_code``), the value (truncated) and the rule it breaks, and quotes the
field's description (which says what is expected).

Where the catalog is: :func:`include_dir` (``DEMOBANK_INCLUDE_DIR``, the project's ``include/`` next to the
package's source tree for an editable install, or ``/opt/airflow/include`` in the Docker image).
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError

from demobank.events.envelope import is_event_type
from demobank.exceptions import ConfigurationError, DemoBankError

INCLUDE_DIR_ENV = "DEMOBANK_INCLUDE_DIR"
"""Environment variable naming the project's ``include`` folder (wins over every other location)."""

DOCKER_INCLUDE_DIR = Path("/opt/airflow/include")
"""Where the Docker image puts ``include/`` (see the Dockerfile)."""

CATALOG_SUBDIR = "events"
"""The catalog's folder inside ``include/``."""

SCHEMA_BASE_URI = "https://schemas.demobank.com/events/"
"""Every schema's ``$id`` is this + ``<type>/v<N>.schema.json``."""

SUBJECT_KEYWORD = "x-demobank-subject"
"""Schema annotation naming the required string field that becomes the envelope's ``subject`` by default."""

API_PUBLISHING_KEYWORD = "x-demobank-api-publishing"
"""Schema annotation (required, boolean): whether the type may be published through the API."""

PUBLISHED_BY_KEYWORD = "x-demobank-published-by"
"""Schema annotation (required when the type is closed to the API): who publishes the type, as a short phrase."""

CHECKED_FORMATS = ("date-time", "date", "uri")
"""The ``format`` values the catalog asserts; a schema using another one is refused at load."""

MAX_PROBLEMS = 20
"""At most this many problems are listed per event in an error message."""

_SCHEMA_FILE = re.compile(r"^v([1-9][0-9]*)\.schema\.json$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- where the catalog is -----------------------------------------------------------------------------------


def _source_tree_include() -> Path | None:
    """``<project>/include`` when the package runs from the project's ``src/`` (editable install), else ``None``."""
    import demobank

    # <project>/src/demobank/__init__.py -> parents: [0] src/demobank, [1] src, [2] the project. An installed
    # wheel lives in site-packages instead, where no project folder is next to it.
    package = Path(demobank.__file__).resolve().parent
    if package.parent.name != "src":
        return None
    return package.parent.parent / "include"


def include_dir() -> Path:
    """Return the project's ``include`` folder (event schemas, templates, sample data).

    In this order: the folder named by ``DEMOBANK_INCLUDE_DIR`` (it must exist); ``<project>/include`` when the
    package runs from its source tree (editable install, tests); ``/opt/airflow/include`` (the Docker image).

    :raises ConfigurationError: when ``DEMOBANK_INCLUDE_DIR`` names no folder, or no candidate exists.
    """
    configured = os.environ.get(INCLUDE_DIR_ENV, "").strip()
    if configured:
        path = Path(configured).expanduser().resolve()
        if not path.is_dir():
            raise ConfigurationError(
                f"{INCLUDE_DIR_ENV}={configured!r} is not a folder: set it to the project's include/ folder "
                "(the one holding events/ and templates/), or unset it."
            )
        return path
    candidates = [path for path in (_source_tree_include(), DOCKER_INCLUDE_DIR) if path is not None]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ConfigurationError(
        f"the project's include/ folder was not found (tried {', '.join(str(c) for c in candidates)}): set "
        f"{INCLUDE_DIR_ENV} to it."
    )


def catalog_dir() -> Path:
    """Return the event catalog's folder, ``<include>/events``."""
    return include_dir() / CATALOG_SUBDIR


def schema_uri_for(event_type: str, version: int) -> str:
    """Return the ``$id`` (and envelope ``dataschema``) of a schema version."""
    return f"{SCHEMA_BASE_URI}{event_type}/v{version}.schema.json"


# -- errors -------------------------------------------------------------------------------------------------


class CatalogError(ConfigurationError):
    """A catalog file is missing, not JSON, not a valid schema, or has an invalid example."""


def _short(value: Any, limit: int = 60) -> str:
    """A JSON rendering of ``value`` cut to ``limit`` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an event.

    :ivar path: the field, e.g. ``data.amount``, ``events[3].data.merchant.category_code``; ``type`` for an
        unknown type, ``envelope`` for the size.
    :ivar message: what is wrong, with the (truncated) value.
    :ivar rule: the rule broken, e.g. ``pattern ^[A-Z]{3}$``, ``required``, ``max size 262144 bytes``.
    :ivar hint: what is expected (the field's description), may be empty.
    """

    path: str
    message: str
    rule: str
    hint: str = ""

    def prefixed(self, prefix: str) -> Problem:
        """The same problem with ``prefix`` before its path (``events[3].``)."""
        return Problem(f"{prefix}{self.path}", self.message, self.rule, self.hint)

    def __str__(self) -> str:
        text = f"{self.path}: {self.message} (rule: {self.rule})"
        return f"{text} — expected: {self.hint}" if self.hint else text


class EventValidationError(DemoBankError, ValueError):
    """An event (or a batch) was refused before anything was written: unknown type, invalid data, too large.

    :ivar problems: every problem found (each names its field).
    """

    def __init__(self, message: str, problems: Iterable[Problem] = ()) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(message)

    @classmethod
    def from_problems(cls, what: str, problems: Iterable[Problem]) -> EventValidationError:
        """Build the error for ``what`` (e.g. ``event transaction.created``) listing its problems."""
        problems = tuple(problems)
        shown = "; ".join(str(problem) for problem in problems[:MAX_PROBLEMS])
        more = f"; and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        return cls(f"{what} refused, nothing was published ({count}): {shown}{more}", problems)


class UnknownEventTypeError(EventValidationError):
    """The event type (or version) is not in the catalog."""


# -- formats ------------------------------------------------------------------------------------------------


def _format_checker() -> FormatChecker:
    """A format checker that asserts exactly :data:`CHECKED_FORMATS`, with no optional dependency."""
    checker = FormatChecker(formats=())

    @checker.checks("date-time", raises=ValueError)
    def _date_time(instance: object) -> bool:
        if not isinstance(instance, str):
            return True
        if not _RFC3339.match(instance):
            return False
        datetime.fromisoformat(instance.upper().replace("Z", "+00:00"))  # real calendar date and time
        return True

    @checker.checks("date", raises=ValueError)
    def _date(instance: object) -> bool:
        if not isinstance(instance, str):
            return True
        return bool(_DATE.match(instance)) and date.fromisoformat(instance) is not None

    @checker.checks("uri")
    def _uri(instance: object) -> bool:
        return not isinstance(instance, str) or bool(_URI.match(instance))

    return checker


FORMAT_CHECKER = _format_checker()

_FORMAT_HINTS = {
    "date-time": "an RFC 3339 timestamp with a UTC offset, e.g. 2026-11-26T09:41:07Z",
    "date": "an ISO 8601 date, e.g. 2026-11-26",
    "uri": "an absolute URI with a scheme, e.g. s3://bucket/key",
}


# -- the catalog --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventSchema:
    """One version of one event type's schema.

    :ivar type: the event type.
    :ivar version: the version number (``v1`` → 1).
    :ivar uri: the schema's ``$id`` (the envelope's ``dataschema``).
    :ivar schema: the schema document.
    :ivar path: the file it was read from.
    :ivar subject_field: the field whose value is the envelope's default ``subject``, if any.
    :ivar api_publishing: whether the type may be published through the API (:data:`API_PUBLISHING_KEYWORD`).
    :ivar published_by: who publishes the type (:data:`PUBLISHED_BY_KEYWORD`), if the schema says.
    """

    type: str
    version: int
    uri: str
    schema: dict[str, Any] = field(repr=False)
    path: Path
    validator: Draft202012Validator = field(repr=False, compare=False)
    subject_field: str | None = None
    api_publishing: bool = False
    published_by: str | None = None
    accepts: Callable[[Any], bool] | None = field(default=None, repr=False, compare=False)
    """A compiled yes/no check (:func:`_compiled_acceptor`) run first; ``None`` when the schema needs jsonschema."""

    @property
    def title(self) -> str:
        return str(self.schema.get("title", self.type))

    @property
    def description(self) -> str:
        return str(self.schema.get("description", ""))

    @property
    def examples(self) -> list[dict[str, Any]]:
        """Copies of the schema's ``examples`` (safe to modify)."""
        return copy.deepcopy(self.schema.get("examples", []))

    def problems(self, data: Any, path: str = "data") -> list[Problem]:
        """Return every problem of ``data`` against this schema (empty when valid), sorted by field.

        Valid data is recognised by the compiled check (about 20x faster); anything it refuses goes through
        jsonschema, whose verdict and messages are the reference.
        """
        if self.accepts is not None and self.accepts(data):
            return []
        found: list[Problem] = []
        for error in self.validator.iter_errors(data):
            found.extend(_problems_of(error, path, self))
        unique = list(dict.fromkeys(found))
        return sorted(unique, key=lambda problem: problem.path)

    def subject_of(self, data: Mapping[str, Any]) -> str | None:
        """The default ``subject`` for ``data``: the value of :attr:`subject_field`, when set."""
        if self.subject_field is None or not isinstance(data, Mapping):
            return None
        value = data.get(self.subject_field)
        return str(value) if value is not None and value != "" else None


def _json_path(base: str, parts: Iterable[Any]) -> str:
    path = base
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.match(str(part)):
            path += f".{part}"
        else:
            path += f"[{json.dumps(str(part), ensure_ascii=False)}]"
    return path


def _rule(error: ValidationError) -> str:
    keyword = str(error.validator)
    value = error.validator_value
    if keyword in ("required", "additionalProperties"):
        return keyword if keyword == "required" else "additionalProperties: false"
    if keyword == "type":
        return f"type {value if isinstance(value, str) else ' or '.join(value)}"
    if keyword == "pattern":
        return f"pattern {value}"
    if keyword == "format":
        return f"format {value}"
    return f"{keyword} {_short(value, 120)}"


def _hint(schema: Any) -> str:
    if not isinstance(schema, Mapping):
        return ""
    description = str(schema.get("description", ""))
    if not description and schema.get("format") in _FORMAT_HINTS:
        description = _FORMAT_HINTS[schema["format"]]
    return description if len(description) <= 300 else description[:299] + "…"


def _problems_of(error: ValidationError, base: str, event_schema: EventSchema) -> list[Problem]:
    """Turn one jsonschema error into problems that name the field (one per missing/unexpected field)."""
    path = _json_path(base, error.absolute_path)
    keyword = error.validator
    instance = error.instance
    if keyword == "required" and isinstance(instance, Mapping):
        properties = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        return [
            Problem(_json_path(path, [name]), "is missing", "required", _hint(properties.get(name)))
            for name in error.validator_value
            if name not in instance and repr(name) in error.message
        ] or [Problem(path, error.message, "required")]
    if keyword == "additionalProperties" and isinstance(instance, Mapping):
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        allowed = list(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        problems = []
        for name in instance:
            if name in allowed or any(re.search(pattern, name) for pattern in patterns):
                continue
            close = difflib.get_close_matches(name, allowed, n=1)
            suggestion = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(
                Problem(
                    _json_path(path, [name]),
                    f"is not a field of {event_schema.type} v{event_schema.version}{suggestion}",
                    "additionalProperties: false",
                    f"one of {', '.join(allowed)}" if allowed else "no fields",
                )
            )
        return problems or [Problem(path, error.message, _rule(error))]
    if keyword == "enum":
        message = f"{_short(instance)} is not one of {_short(error.validator_value, 200)}"
    elif keyword == "const":
        message = f"{_short(instance)} is not {_short(error.validator_value)}"
    elif keyword == "type":
        expected = error.validator_value
        expected = expected if isinstance(expected, str) else " or ".join(expected)
        message = f"{_short(instance)} is {_a(_json_type(instance))}, not {_a(expected)}"
    elif keyword == "format":
        message = f"{_short(instance)} is not a valid {error.validator_value}"
    elif keyword == "pattern":
        message = f"{_short(instance)} does not match the expected form"
    elif keyword in ("minLength", "maxLength") and isinstance(instance, str):
        message = f"{_short(instance)} is {len(instance)} characters long"
    elif keyword in ("minItems", "maxItems") and isinstance(instance, list):
        message = f"{_short(instance)} has {len(instance)} items"
    elif keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        message = f"{_short(instance)} is out of range"
    elif keyword == "uniqueItems":
        message = f"{_short(instance)} has duplicate items"
    else:
        message = f"{_short(instance)} breaks the rule"
    return [Problem(path, message, _rule(error), _hint(error.schema))]


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _formats_used(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, Mapping):
        if isinstance(schema.get("format"), str):
            found.add(schema["format"])
        for key, value in schema.items():
            if key not in ("examples", "default", "const", "enum"):
                found |= _formats_used(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= _formats_used(item)
    return found


_COMPILABLE_KEYWORDS = frozenset({
    "$schema", "$id", "title", "description", "examples", "type", "properties", "required",
    "additionalProperties", "pattern", "enum", "const", "minLength", "maxLength", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "format", "items", "minItems", "maxItems", "uniqueItems",
    "minProperties", "maxProperties", SUBJECT_KEYWORD, API_PUBLISHING_KEYWORD, PUBLISHED_BY_KEYWORD,
})
"""Keywords that mean the same in draft 2020-12 and in the drafts fastjsonschema compiles (draft 7)."""


def _keywords(schema: Any, under_properties: bool = False) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if not under_properties:
                found.add(key)
            if key in ("examples", "enum", "const"):
                continue
            found |= _keywords(value, under_properties=key == "properties" and not under_properties)
    elif isinstance(schema, list):
        for item in schema:
            found |= _keywords(item)
    return found


def _compiled_acceptor(schema: dict[str, Any]) -> Callable[[Any], bool] | None:
    """A fast yes/no check compiled by fastjsonschema with the catalog's own format checks, or ``None`` when the
    schema uses a keyword outside :data:`_COMPILABLE_KEYWORDS` (it could be ignored there, accepting bad data)."""
    if _keywords(schema) - _COMPILABLE_KEYWORDS:
        return None
    import fastjsonschema

    def checked(name: str) -> Callable[[Any], bool]:
        def check(value: Any) -> bool:
            try:
                return FORMAT_CHECKER.conforms(value, name)
            except ValueError:
                return False

        return check

    draft7 = {key: value for key, value in schema.items() if key not in ("$schema", "$id")}
    validate = fastjsonschema.compile(draft7, formats={name: checked(name) for name in CHECKED_FORMATS},
                                      use_default=False)

    def accepts(data: Any) -> bool:
        try:
            validate(data)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return accepts


def _load_schema(event_type: str, version: int, path: Path) -> EventSchema:
    where = f"{path}"
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError(f"event schema {where} cannot be read as JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise CatalogError(f"event schema {where} is not a JSON object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise CatalogError(
            f"event schema {where} is not a valid JSON Schema draft 2020-12 at "
            f"{'/'.join(map(str, exc.absolute_path)) or '(root)'}: {exc.message}"
        ) from exc
    expected = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_uri_for(event_type, version),
    }
    for keyword, value in expected.items():
        if schema.get(keyword) != value:
            raise CatalogError(
                f"event schema {where} has {keyword} {schema.get(keyword)!r}: it must be {value!r} (the "
                "catalog's URI scheme, derived from the folder and file name)"
            )
    for keyword in ("title", "description"):
        if not isinstance(schema.get(keyword), str) or not schema[keyword].strip():
            raise CatalogError(f"event schema {where} has no {keyword!r}: add a non-empty one")
    if schema.get("type") != "object":
        raise CatalogError(f'event schema {where} must describe a JSON object ("type": "object")')
    unchecked = _formats_used(schema) - set(CHECKED_FORMATS)
    if unchecked:
        raise CatalogError(
            f"event schema {where} uses format {', '.join(sorted(unchecked))}, which the catalog does not check: "
            f"use one of {', '.join(CHECKED_FORMATS)} or a pattern"
        )
    subject_field = schema.get(SUBJECT_KEYWORD)
    if subject_field is not None and (
        not isinstance(subject_field, str)
        or subject_field not in schema.get("required", [])
        or schema.get("properties", {}).get(subject_field, {}).get("type") != "string"
    ):
        raise CatalogError(
            f"event schema {where}: {SUBJECT_KEYWORD} is {subject_field!r}: it must name a required string field"
        )
    api_publishing = schema.get(API_PUBLISHING_KEYWORD)
    if not isinstance(api_publishing, bool):
        raise CatalogError(
            f"event schema {where} has {API_PUBLISHING_KEYWORD} {api_publishing!r}: it must be true (other systems "
            "may publish the type through POST /demobank/api/v1/events) or false (only the suite publishes it)"
        )
    published_by = schema.get(PUBLISHED_BY_KEYWORD)
    if (published_by is not None or not api_publishing) and (
            not isinstance(published_by, str) or not published_by.strip() or len(published_by) > 200):
        raise CatalogError(
            f"event schema {where} has {PUBLISHED_BY_KEYWORD} {published_by!r}: a type closed to the API needs it, a "
            "phrase of at most 200 characters naming who publishes the type (e.g. \"the Data Factory's run reporting\")"
        )
    event_schema = EventSchema(
        type=event_type,
        version=version,
        uri=expected["$id"],
        schema=schema,
        path=path,
        subject_field=subject_field,
        api_publishing=api_publishing,
        published_by=published_by,
        validator=Draft202012Validator(schema, format_checker=FORMAT_CHECKER),
        accepts=_compiled_acceptor(schema),
    )
    examples = schema.get("examples")
    if not isinstance(examples, list) or not examples:
        raise CatalogError(f"event schema {where} has no examples: add at least one valid payload under 'examples'")
    for index, example in enumerate(examples):
        problems = event_schema.problems(example, f"examples[{index}]")
        if problems:
            raise CatalogError(
                f"event schema {where}: example {index} is not valid against its own schema: "
                + "; ".join(map(str, problems[:MAX_PROBLEMS]))
            )
    return event_schema


class Catalog:
    """Every schema version of every event type in a catalog folder, loaded and checked eagerly.

    :param directory: the catalog folder (``<include>/events``).
    :raises CatalogError: when the folder is missing or a schema file is broken (see the module docstring).
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise CatalogError(
                f"the event catalog folder {self.directory} does not exist: it holds one folder per event type "
                f"with v<N>.schema.json files (set {INCLUDE_DIR_ENV} to the project's include/ folder)."
            )
        schemas: dict[str, dict[int, EventSchema]] = {}
        for type_dir in sorted(self.directory.iterdir()):
            if not type_dir.is_dir() or type_dir.name.startswith((".", "_")):
                continue
            if not is_event_type(type_dir.name):
                raise CatalogError(
                    f"catalog folder {type_dir} is not named like an event type: use lower-case words separated "
                    "by dots, e.g. transaction.created"
                )
            versions: dict[int, EventSchema] = {}
            for file in sorted(type_dir.iterdir()):
                match = _SCHEMA_FILE.match(file.name)
                if match is None:
                    if file.name.endswith(".json"):
                        raise CatalogError(
                            f"catalog file {file} is not named v<N>.schema.json (N = 1, 2, …): rename it"
                        )
                    continue
                version = int(match.group(1))
                versions[version] = _load_schema(type_dir.name, version, file)
            if not versions:
                raise CatalogError(f"catalog folder {type_dir} has no v<N>.schema.json file")
            missing = sorted(set(range(1, max(versions) + 1)) - set(versions))
            if missing:
                raise CatalogError(
                    f"catalog folder {type_dir} skips version(s) {', '.join(f'v{v}' for v in missing)}: versions "
                    "are numbered 1, 2, 3… and never removed"
                )
            if len({schema.api_publishing for schema in versions.values()}) > 1:
                flags = ", ".join(f"v{v}: {str(s.api_publishing).lower()}" for v, s in sorted(versions.items()))
                raise CatalogError(
                    f"catalog folder {type_dir}: {API_PUBLISHING_KEYWORD} differs between versions ({flags}): it "
                    "is decided per type, give every version the same value"
                )
            schemas[type_dir.name] = versions
        if not schemas:
            raise CatalogError(f"the event catalog folder {self.directory} has no event types")
        self._schemas = schemas
        self._by_uri = {s.uri: s for versions in schemas.values() for s in versions.values()}

    def __repr__(self) -> str:
        return f"Catalog({str(self.directory)!r}, types={len(self._schemas)})"

    def event_types(self) -> list[str]:
        """Every event type, sorted."""
        return sorted(self._schemas)

    def versions(self, event_type: str) -> list[int]:
        """The schema versions of ``event_type``, ascending.

        :raises UnknownEventTypeError: for a type not in the catalog.
        """
        return sorted(self._versions(event_type))

    def _versions(self, event_type: str) -> dict[int, EventSchema]:
        versions = self._schemas.get(event_type) if isinstance(event_type, str) else None
        if versions is None:
            raise UnknownEventTypeError.from_problems(
                f"event type {_short(event_type)}", [self.unknown_type_problem(event_type)]
            )
        return versions

    def unknown_type_problem(self, event_type: Any, path: str = "type") -> Problem:
        """The problem reported for a type that is not in the catalog (with a close match, if any)."""
        known = self.event_types()
        close = difflib.get_close_matches(event_type, known, n=1) if isinstance(event_type, str) else []
        suggestion = f"; did you mean {close[0]!r}?" if close else ""
        return Problem(
            path,
            f"{_short(event_type)} is not an event type of the catalog{suggestion}",
            "known event type",
            f"one of {', '.join(known)} (or add include/events/<type>/v1.schema.json)",
        )

    def get(self, event_type: str, version: int | None = None) -> EventSchema:
        """Return a schema version of ``event_type`` (the newest when ``version`` is ``None``).

        :raises UnknownEventTypeError: for a type or a version not in the catalog.
        """
        versions = self._versions(event_type)
        if version is None:
            return versions[max(versions)]
        if isinstance(version, bool) or not isinstance(version, int) or version not in versions:
            problem = Problem(
                "version",
                f"{_short(version)} is not a version of {event_type}",
                "known schema version",
                f"one of {', '.join(map(str, sorted(versions)))}",
            )
            raise UnknownEventTypeError.from_problems(f"event {event_type}", [problem])
        return versions[version]

    def by_uri(self, uri: str) -> EventSchema:
        """Return the schema version whose ``$id`` is ``uri`` (an envelope's ``dataschema``).

        :raises UnknownEventTypeError: when no schema has that URI.
        """
        try:
            return self._by_uri[uri]
        except KeyError:
            problem = Problem("dataschema", f"{_short(uri)} is not a schema of the catalog", "known schema URI")
            raise UnknownEventTypeError.from_problems("dataschema", [problem]) from None

    def examples(self, event_type: str, version: int | None = None) -> list[dict[str, Any]]:
        """Copies of the ``examples`` of a schema version (the newest by default)."""
        return self.get(event_type, version).examples

    def api_publishing(self, event_type: str) -> bool:
        """Whether ``event_type`` may be published through the API (:data:`API_PUBLISHING_KEYWORD`).

        :raises UnknownEventTypeError: for a type not in the catalog.
        """
        return self.get(event_type).api_publishing

    def api_types(self) -> list[str]:
        """The event types open to publishing through the API, sorted."""
        return [name for name in self.event_types() if self.api_publishing(name)]

    def api_publishing_problem(self, event_type: Any, path: str = "type") -> Problem | None:
        """The problem of publishing ``event_type`` through the API: ``None`` when the type is open to it (or not in
        the catalog, which is reported on its own)."""
        if not isinstance(event_type, str) or event_type not in self._schemas or self.api_publishing(event_type):
            return None
        newest = self.get(event_type)
        return Problem(
            path,
            f"{event_type} may not be published through the API: only {newest.published_by} publishes it "
            f"({API_PUBLISHING_KEYWORD} is false in include/events/{event_type}/v{newest.version}.schema.json)",
            "type open to API publishing",
            f"one of {', '.join(self.api_types()) or 'no type'}; publish {event_type} through its own publisher",
        )

    def problems(self, event_type: Any, data: Any, version: int | None = None, path: str = "data") -> list[Problem]:
        """Every problem of an event (unknown type or version, invalid data) without raising; empty when valid.

        :param path: the prefix of the data's field paths (``events[3].data`` in a batch).
        """
        try:
            event_schema = self.get(event_type, version)
        except UnknownEventTypeError as exc:
            return list(exc.problems)
        return event_schema.problems(data, path)

    def validate(self, event_type: str, data: Any, version: int | None = None) -> EventSchema:
        """Check ``data`` against the schema of ``event_type`` (the newest version unless ``version`` is given).

        :return: the schema version used (its ``uri`` is the envelope's ``dataschema``).
        :raises UnknownEventTypeError: for a type or version not in the catalog.
        :raises EventValidationError: when ``data`` does not match, listing every bad field.
        """
        event_schema = self.get(event_type, version)
        problems = event_schema.problems(data)
        if problems:
            raise EventValidationError.from_problems(f"event {event_type} (schema v{event_schema.version})", problems)
        return event_schema


# -- the process-wide catalog -------------------------------------------------------------------------------

_catalogs: dict[Path, Catalog] = {}
_catalogs_lock = threading.Lock()


def get_catalog(directory: Path | str | None = None) -> Catalog:
    """Return the catalog of ``directory`` (default :func:`catalog_dir`), loaded once per process and cached.

    Schema files changed while the process runs are seen after :func:`clear_cache` (or a restart).
    """
    path = Path(directory).resolve() if directory is not None else catalog_dir().resolve()
    catalog = _catalogs.get(path)
    if catalog is None:
        with _catalogs_lock:
            catalog = _catalogs.get(path)
            if catalog is None:
                catalog = Catalog(path)
                _catalogs[path] = catalog
    return catalog


def clear_cache() -> None:
    """Forget every loaded catalog (the next use reloads the files)."""
    with _catalogs_lock:
        _catalogs.clear()


def event_types() -> list[str]:
    """Every event type of the default catalog, sorted."""
    return get_catalog().event_types()


def versions(event_type: str) -> list[int]:
    """The schema versions of ``event_type`` in the default catalog."""
    return get_catalog().versions(event_type)


def examples(event_type: str, version: int | None = None) -> list[dict[str, Any]]:
    """Copies of the example payloads of ``event_type`` (newest version by default)."""
    return get_catalog().examples(event_type, version)


def schema_uri(event_type: str, version: int | None = None) -> str:
    """The URI (``$id``) of a schema version of ``event_type`` (newest by default), for ``dataschema``."""
    return get_catalog().get(event_type, version).uri


def validate(event_type: str, data: Any, version: int | None = None) -> EventSchema:
    """Check ``data`` against the default catalog; see :meth:`Catalog.validate`."""
    return get_catalog().validate(event_type, data, version)
