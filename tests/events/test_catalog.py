"""The event catalog in include/events: its files, where it is found, loading checks, and validation messages."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from demobank.events import catalog as catalog_module
from demobank.events.catalog import (
    INCLUDE_DIR_ENV,
    Catalog,
    CatalogError,
    EventValidationError,
    UnknownEventTypeError,
    catalog_dir,
    event_types,
    examples,
    get_catalog,
    include_dir,
    schema_uri,
    validate,
)
from demobank.exceptions import ConfigurationError

PROJECT_DIR = Path(__file__).resolve().parents[2]
CATALOG_DIR = PROJECT_DIR / "include" / "events"
REQUIRED_TYPES = {
    "transaction.created",
    "transaction.flagged",
    "customer.created",
    "pipeline.run.completed",
    "demobank.ping",
}
SCHEMA_FILES = sorted(CATALOG_DIR.glob("*/v*.schema.json"))


def _transaction() -> dict:
    return examples("transaction.created")[0]


# -- the files themselves (read directly, not through the loader) -------------------------------------------


def test_catalog_has_the_required_event_types() -> None:
    assert REQUIRED_TYPES <= {path.parent.name for path in SCHEMA_FILES}
    assert REQUIRED_TYPES <= set(event_types())


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_schema_file_is_a_documented_draft_2020_12_schema_with_valid_examples(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    version = int(path.name.removeprefix("v").removesuffix(".schema.json"))

    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://schemas.demobank.com/events/{path.parent.name}/v{version}.schema.json"
    assert schema["title"].strip()
    assert len(schema["description"]) > 40
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["examples"], "at least one example payload"
    plain = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for example in schema["examples"]:
        assert list(plain.iter_errors(example)) == []  # valid with jsonschema's own checker too


@pytest.mark.parametrize(
    ("event_type", "version"),
    [(path.parent.name, int(path.name[1:].split(".")[0])) for path in SCHEMA_FILES],
)
def test_every_catalog_example_validates(event_type: str, version: int) -> None:
    payloads = examples(event_type, version)

    assert payloads
    for payload in payloads:
        used = validate(event_type, payload, version)
        assert (used.type, used.version) == (event_type, version)
        assert used.uri == schema_uri(event_type, version)


def test_money_is_a_decimal_string() -> None:
    schema = get_catalog().get("transaction.created").schema
    assert schema["properties"]["amount"]["type"] == "string"

    for good in ("0", "42.50", "1200", "0.0001", "999999999999999.99"):
        validate("transaction.created", {**_transaction(), "amount": good})
    for bad in (42.5, "42,50", "-42.50", "4.2e1", "042.50", "42.", "42.12345", " 42.50", "1,200.00"):
        with pytest.raises(EventValidationError, match=r"data\.amount"):
            validate("transaction.created", {**_transaction(), "amount": bad})


# -- where the catalog is -----------------------------------------------------------------------------------


def test_include_dir_is_the_projects_include_for_the_editable_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INCLUDE_DIR_ENV, raising=False)

    assert include_dir() == PROJECT_DIR / "include"
    assert catalog_dir() == CATALOG_DIR


def test_include_dir_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(INCLUDE_DIR_ENV, str(tmp_path))
    assert include_dir() == tmp_path.resolve()

    monkeypatch.setenv(INCLUDE_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match=rf"{INCLUDE_DIR_ENV}=.*missing.* is not a folder"):
        include_dir()


def test_include_dir_falls_back_to_the_docker_image_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(INCLUDE_DIR_ENV, raising=False)
    monkeypatch.setattr(catalog_module, "_source_tree_include", lambda: tmp_path / "no-source-tree")
    docker = tmp_path / "opt-airflow-include"
    monkeypatch.setattr(catalog_module, "DOCKER_INCLUDE_DIR", docker)

    with pytest.raises(ConfigurationError, match=r"include/ folder was not found \(tried .*no-source-tree"):
        include_dir()
    docker.mkdir()
    assert include_dir() == docker


# -- refusals and their messages -----------------------------------------------------------------------------


def test_unknown_type_is_refused_with_a_suggestion() -> None:
    with pytest.raises(UnknownEventTypeError) as caught:
        validate("transaction.create", {})

    message = str(caught.value)
    assert "'transaction.create'" in message or '"transaction.create"' in message
    assert "did you mean 'transaction.created'" in message
    assert "nothing was published" in message
    assert caught.value.problems[0].path == "type"
    assert isinstance(caught.value, ValueError)


def test_unknown_version_is_refused() -> None:
    with pytest.raises(UnknownEventTypeError, match=r"version: 7 is not a version of transaction.created.*one of 1"):
        validate("transaction.created", _transaction(), version=7)


@pytest.mark.parametrize(
    ("change", "path", "fragments"),
    [
        ({"amount": 42.5}, "data.amount", ["42.5 is a number, not a string", "rule: type string"]),
        ({"amount": "42,50"}, "data.amount", ['"42,50"', "rule: pattern", "decimal string"]),
        ({"currency": "eur"}, "data.currency", ['"eur"', "rule: pattern ^[A-Z]{3}$", "ISO 4217"]),
        ({"direction": "out"}, "data.direction", ['"out" is not one of ["debit", "credit"]', "rule: enum"]),
        ({"merchant": {"name": "Shop", "category_code": "54111"}}, "data.merchant.category_code", ['"54111"']),
        ({"booked_at": "yesterday"}, "data.booked_at", ["not a valid date-time", "rule: format date-time"]),
        ({"booked_at": "2026-11-31T10:00:00Z"}, "data.booked_at", ["not a valid date-time"]),
        ({"booked_at": "2026-11-26T10:00:00"}, "data.booked_at", ["not a valid date-time"]),  # no offset
        ({"value_date": "2026-02-30"}, "data.value_date", ["not a valid date"]),
        ({"ammount": "1.00"}, "data.ammount", ["is not a field of transaction.created v1", "did you mean 'amount'"]),
    ],
)
def test_schema_violation_names_the_field_the_value_and_the_rule(change: dict, path: str, fragments: list[str]) -> None:
    data = {**_transaction(), **change}

    with pytest.raises(EventValidationError) as caught:
        validate("transaction.created", data)

    message = str(caught.value)
    assert f"{path}: " in message
    for fragment in fragments:
        assert fragment in message
    assert [problem.path for problem in caught.value.problems] == [path]


def test_missing_fields_are_each_named() -> None:
    data = _transaction()
    del data["currency"], data["booked_at"]

    with pytest.raises(EventValidationError) as caught:
        validate("transaction.created", data)

    assert [(p.path, p.message, p.rule) for p in caught.value.problems] == [
        ("data.booked_at", "is missing", "required"),
        ("data.currency", "is missing", "required"),
    ]
    assert "data.currency: is missing (rule: required) — expected: ISO 4217" in str(caught.value)


def test_long_values_are_truncated_in_messages() -> None:
    data = {**_transaction(), "description": "x" * 5000}

    with pytest.raises(EventValidationError) as caught:
        validate("transaction.created", data)

    message = str(caught.value)
    assert "data.description" in message
    assert "is 5000 characters long (rule: maxLength 140)" in message
    assert "x" * 100 not in message
    assert "…" in message
    assert len(message) < 1000


def test_data_that_is_not_an_object() -> None:
    with pytest.raises(EventValidationError, match=r"data: \[1, 2\] is an array, not an object"):
        validate("demobank.ping", [1, 2])


# -- loading: a broken catalog is refused at load -------------------------------------------------------------


def _write_schema(directory: Path, event_type: str, version: int, **overrides: object) -> dict:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://schemas.demobank.com/events/{event_type}/v{version}.schema.json",
        "title": "Test",
        "description": "A test event.",
        "x-demobank-api-publishing": True,
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {"name": {"type": "string"}},
        "examples": [{"name": "a"}],
    }
    schema.update(overrides)
    folder = directory / event_type
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"v{version}.schema.json").write_text(json.dumps(schema), encoding="utf-8")
    return schema


def test_versions_are_files_and_the_newest_is_the_default(tmp_path: Path) -> None:
    _write_schema(tmp_path, "account.opened", 1)
    _write_schema(
        tmp_path,
        "account.opened",
        2,
        required=["name", "currency"],
        properties={"name": {"type": "string"}, "currency": {"type": "string"}},
        examples=[{"name": "a", "currency": "EUR"}],
    )
    catalog = Catalog(tmp_path)

    assert catalog.event_types() == ["account.opened"]
    assert catalog.versions("account.opened") == [1, 2]
    assert catalog.get("account.opened").version == 2
    assert catalog.get("account.opened").uri.endswith("/account.opened/v2.schema.json")
    assert catalog.validate("account.opened", {"name": "a"}, version=1).version == 1
    with pytest.raises(EventValidationError, match=r"data\.currency: is missing"):
        catalog.validate("account.opened", {"name": "a"})
    assert catalog.by_uri(catalog.get("account.opened", 1).uri).version == 1


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"examples": [{"name": 1}]}, r"example 0 is not valid against its own schema: examples\[0\]\.name"),
        ({"examples": []}, "has no examples"),
        ({"$id": "https://example.com/other.json"}, r"has \$id 'https://example.com/other.json': it must be"),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, r"has \$schema"),
        ({"description": ""}, "has no 'description'"),
        ({"properties": {"name": {"type": "string", "format": "email"}}}, "uses format email"),
        ({"properties": {"name": {"type": "nonsense"}}}, "is not a valid JSON Schema draft 2020-12"),
        ({"x-demobank-subject": "missing_field"}, "x-demobank-subject is 'missing_field'"),
        ({"x-demobank-api-publishing": None}, "has x-demobank-api-publishing None: it must be true .* or false"),
        ({"x-demobank-api-publishing": "yes"}, "has x-demobank-api-publishing 'yes': it must be true"),
        ({"x-demobank-api-publishing": False}, "has x-demobank-published-by None: a type closed to the API needs it"),
        ({"x-demobank-api-publishing": False, "x-demobank-published-by": ""}, "has x-demobank-published-by ''"),
        ({"x-demobank-published-by": 7}, "has x-demobank-published-by 7"),
    ],
)
def test_broken_schema_is_refused_at_load(tmp_path: Path, overrides: dict, error: str) -> None:
    _write_schema(tmp_path, "account.opened", 1, **overrides)

    with pytest.raises(CatalogError, match=error):
        Catalog(tmp_path)


def test_broken_catalog_layouts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        Catalog(tmp_path / "missing")
    with pytest.raises(CatalogError, match="has no event types"):
        Catalog(tmp_path)

    _write_schema(tmp_path, "account.opened", 1)
    _write_schema(tmp_path, "account.opened", 3)
    with pytest.raises(CatalogError, match="skips version"):
        Catalog(tmp_path)
    (tmp_path / "account.opened" / "v3.schema.json").unlink()

    (tmp_path / "account.opened" / "latest.json").write_text("{}")
    with pytest.raises(CatalogError, match=r"not named v<N>\.schema\.json"):
        Catalog(tmp_path)
    (tmp_path / "account.opened" / "latest.json").unlink()

    (tmp_path / "Bad Type").mkdir()
    with pytest.raises(CatalogError, match="not named like an event type"):
        Catalog(tmp_path)
    (tmp_path / "Bad Type").rmdir()

    (tmp_path / "account.closed").mkdir()
    (tmp_path / "account.closed" / "v1.schema.json").write_text("{not json")
    with pytest.raises(CatalogError, match="cannot be read as JSON"):
        Catalog(tmp_path)


def test_api_publishing_is_decided_per_type(tmp_path: Path) -> None:
    _write_schema(tmp_path, "account.opened", 1)
    _write_schema(tmp_path, "account.opened", 2, **{"x-demobank-api-publishing": False,
                                                    "x-demobank-published-by": "the account service"})

    with pytest.raises(CatalogError, match=r"x-demobank-api-publishing differs between versions \(v1: true, v2: "
                                           r"false\): it is decided per type"):
        Catalog(tmp_path)


def test_catalog_is_cached_per_folder_and_examples_are_copies(tmp_path: Path) -> None:
    _write_schema(tmp_path, "account.opened", 1)
    first = get_catalog(tmp_path)

    assert get_catalog(tmp_path) is first
    payload = first.examples("account.opened")[0]
    payload["name"] = "changed"
    assert first.examples("account.opened")[0] == {"name": "a"}

    catalog_module.clear_cache()
    assert get_catalog(tmp_path) is not first


# -- publishing through the API ---------------------------------------------------------------------------------


def test_the_catalog_says_which_types_the_api_may_publish() -> None:
    catalog = get_catalog()

    assert catalog.api_types() == ["customer.created", "transaction.created", "transaction.flagged"]
    assert not catalog.api_publishing("pipeline.run.completed")
    assert not catalog.api_publishing("demobank.ping")
    for event_type in catalog.event_types():
        raw = json.loads((CATALOG_DIR / event_type / "v1.schema.json").read_text(encoding="utf-8"))
        assert raw["x-demobank-api-publishing"] is catalog.api_publishing(event_type)
    with pytest.raises(UnknownEventTypeError):
        catalog.api_publishing("transaction.exploded")


def test_a_closed_type_is_a_problem_that_says_who_publishes_it_and_what_to_do() -> None:
    catalog = get_catalog()

    problem = catalog.api_publishing_problem("pipeline.run.completed", "events[3].type")

    assert problem is not None and problem.path == "events[3].type"
    assert problem.message == (
        "pipeline.run.completed may not be published through the API: only the Data Factory's run reporting "
        "publishes it (x-demobank-api-publishing is false in include/events/pipeline.run.completed/v1.schema.json)")
    assert problem.hint.startswith("one of customer.created, transaction.created, transaction.flagged")
    assert "POST /demobank/api/v1/targets/{id}/ping" in str(catalog.api_publishing_problem("demobank.ping"))
    # Open and unknown types are no problem here (an unknown type is reported as unknown, on its own).
    assert catalog.api_publishing_problem("transaction.created") is None
    assert catalog.api_publishing_problem("transaction.exploded") is None
    assert catalog.api_publishing_problem(None) is None


def test_subject_field_gives_the_default_subject() -> None:
    catalog = get_catalog()
    transaction = _transaction()

    assert catalog.get("transaction.created").subject_of(transaction) == transaction["transaction_id"]
    assert catalog.get("customer.created").subject_field == "customer_id"
    assert catalog.get("demobank.ping").subject_of({"message": "ping"}) is None


def test_validation_does_not_modify_the_data() -> None:
    data = _transaction()
    before = copy.deepcopy(data)

    validate("transaction.created", data)

    assert data == before


# -- the compiled fast path agrees with jsonschema ---------------------------------------------------------------


def _variants(example: dict) -> list:
    """The example and many broken or odd versions of it: each field removed, retyped, emptied, overlong, in a bad
    format (impossible calendar dates too), plus an unknown field."""
    odd_values = [None, 0, -1, 1.5, True, "", " ", "x" * 1000, [], {}, "2026-02-30", "2026-02-30T10:00:00Z",
                  "2026-11-26T09:41:07Z", "2026-11-26", "not a uri", "s3://bucket/key", "CUST-00042", "TXN-1",
                  "42.50", "-5", "1e3", "EUR", "eur", "debit", "DE", "5411"]
    variants = [example, {**example, "unexpected_field": 1}, "not an object", None, []]
    for key, value in example.items():
        variants.append({k: v for k, v in example.items() if k != key})
        variants.extend({**example, key: odd} for odd in odd_values)
        if isinstance(value, dict):
            for inner in value:
                variants.extend({**example, key: {**value, inner: odd}} for odd in odd_values)
    return variants


@pytest.mark.parametrize("event_type", event_types())
def test_the_compiled_check_accepts_exactly_what_jsonschema_accepts(event_type: str) -> None:
    schema = get_catalog().get(event_type)
    assert schema.accepts is not None, "every catalog schema is compiled (keywords all shared with draft 7)"
    checked = 0
    for example in schema.examples:
        for data in _variants(example):
            reference = not list(schema.validator.iter_errors(data))
            assert schema.accepts(data) is reference, (event_type, data)
            checked += 1
    assert checked > 50


def test_a_schema_with_a_keyword_draft_7_lacks_is_not_compiled() -> None:
    from demobank.events.catalog import _compiled_acceptor

    assert _compiled_acceptor({"type": "object", "properties": {"a": {"type": "string"}}}) is not None
    assert _compiled_acceptor({"type": "object", "unevaluatedProperties": False}) is None
    assert _compiled_acceptor({"type": "array", "prefixItems": [{"type": "string"}]}) is None
