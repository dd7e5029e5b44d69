"""Typed job parameters: declarations (parse_specs, the CLI shorthand) and the check
every trigger's values pass (validate_params), including text from query strings."""

from __future__ import annotations

from typing import Any

import pytest

from runwright.errors import InvalidRequest
from runwright.model.params import (
    TYPES,
    ParameterSpec,
    coerce,
    parse_param_option,
    parse_specs,
    validate_params,
)


def spec(kind: str = "string", **extra: Any) -> ParameterSpec:
    return ParameterSpec(name="p", type=kind, **extra)  # type: ignore[arg-type]


def refused(kind: str, value: Any, **extra: Any) -> str:
    with pytest.raises(InvalidRequest) as caught:
        coerce(spec(kind, **extra), value)
    return caught.value.message


# -- coercion, type by type --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [
        ("string", "hello", "hello"),
        ("string", "", ""),
        ("string", 42, "42"),
        ("string", 1.5, "1.5"),
        ("integer", 7, 7),
        ("integer", -3, -3),
        ("integer", "42", 42),
        ("integer", " -17 ", -17),
        ("integer", "+5", 5),
        ("integer", 3.0, 3),
        ("number", 2.5, 2.5),
        ("number", 4, 4),
        ("number", "2.5", 2.5),
        ("number", "-0.125", -0.125),
        ("number", "10", 10),
        ("number", "1e3", 1000.0),
        ("boolean", True, True),
        ("boolean", False, False),
        ("boolean", "true", True),
        ("boolean", "TRUE", True),
        ("boolean", " yes ", True),
        ("boolean", "on", True),
        ("boolean", "1", True),
        ("boolean", "false", False),
        ("boolean", "No", False),
        ("boolean", "off", False),
        ("boolean", "0", False),
        ("date", "2026-11-22", "2026-11-22"),
        ("date", " 2026-02-28 ", "2026-02-28"),
        ("datetime", "2026-11-22T06:00:00+01:00", "2026-11-22T06:00:00+01:00"),
        ("datetime", "2026-11-22T06:00:00Z", "2026-11-22T06:00:00+00:00"),
        ("datetime", "2026-11-22 06:00:00-05:00", "2026-11-22T06:00:00-05:00"),
        ("datetime", "2026-11-22T06:00:00.250+00:00", "2026-11-22T06:00:00.250000+00:00"),
    ],
)
def test_values_and_query_string_text_become_the_declared_type(
    kind: str, given: Any, expected: Any
) -> None:
    value = coerce(spec(kind), given)
    assert value == expected
    assert type(value) is type(expected)


def test_a_number_given_as_whole_text_stays_whole() -> None:
    assert type(coerce(spec("number"), "10")) is int
    assert type(coerce(spec("number"), "10.0")) is float


@pytest.mark.parametrize(
    ("kind", "given", "expectation"),
    [
        ("string", True, "a string"),
        ("string", None, "a string"),
        ("string", ["a"], "a string"),
        ("integer", "4.5", "a whole number"),
        ("integer", 4.5, "a whole number"),
        ("integer", "1e3", "a whole number"),
        ("integer", "twelve", "a whole number"),
        ("integer", True, "a whole number"),
        ("integer", "", "a whole number"),
        ("number", "abc", "a number"),
        ("number", "nan", "a number"),
        ("number", "inf", "a number"),
        ("number", float("nan"), "a number"),
        ("number", float("-inf"), "a number"),
        ("number", True, "a number"),
        ("number", None, "a number"),
        ("boolean", "maybe", "true or false"),
        ("boolean", 1, "true or false"),
        ("boolean", "", "true or false"),
        ("date", "2026-13-01", "a date like 2026-11-22"),
        ("date", "22.11.2026", "a date like 2026-11-22"),
        ("date", "2026-11-22T06:00:00", "a date like 2026-11-22"),
        ("date", 20261122, "a date like 2026-11-22"),
        ("datetime", "yesterday", "a date and time like 2026-11-22T06:00:00+01:00"),
        ("datetime", 1_700_000_000, "a date and time like 2026-11-22T06:00:00+01:00"),
    ],
)
def test_unfit_values_are_refused_naming_the_parameter_and_the_expectation(
    kind: str, given: Any, expectation: str
) -> None:
    message = refused(kind, given)
    assert message == f"parameter 'p' must be {expectation}, got {given!r}"


@pytest.mark.parametrize("given", ["2026-11-22T06:00:00", "2026-11-22", "2026-11-22 06:00"])
def test_a_datetime_without_an_offset_is_refused_asking_for_one(given: str) -> None:
    message = refused("datetime", given)
    assert message.startswith("parameter 'p' must be a date and time like ")
    assert message.endswith("(add a UTC offset, e.g. +00:00 or Z)")
    assert repr(given) in message


def test_an_enum_takes_one_of_its_choices_also_as_text() -> None:
    mode = spec("enum", choices=["fast", "full"])
    assert coerce(mode, "fast") == "fast"
    assert coerce(mode, "full") == "full"
    level = spec("enum", choices=[1, 2, 3])
    assert coerce(level, 2) == 2
    assert coerce(level, "2") == 2  # from a query string
    assert type(coerce(level, "2")) is int
    ratio = spec("enum", choices=[0.5, 1.5])
    assert coerce(ratio, "1.5") == 1.5


def test_an_enum_refuses_other_values_listing_its_choices() -> None:
    assert refused("enum", "slow", choices=["fast", "full"]) == (
        "parameter 'p' must be one of 'fast', 'full', got 'slow'"
    )
    assert refused("enum", "FAST", choices=["fast", "full"]).endswith("got 'FAST'")
    assert refused("enum", 4, choices=[1, 2, 3]) == "parameter 'p' must be one of 1, 2, 3, got 4"


def test_an_enum_of_whole_numbers_refuses_a_boolean() -> None:
    """Regression (found here, fixed in 0698e0f): every other type refuses True/False
    where it wants a number, but the enum compared ``value == choice``, and ``True == 1``."""
    assert refused("enum", True, choices=[1, 2]).endswith("got True")


def test_an_enum_declared_on_the_command_line_takes_the_number_the_cli_sends() -> None:
    """Regression (found here, fixed in 0698e0f): `runwright job create J --param
    level:enum(1|2)` declares the choices as text ['1', '2'], while `runwright run J -p
    level=1` (and `schedule add -p`, and a webhook's JSON body) sends the JSON number 1;
    it was refused with "must be one of '1', '2', got 1"."""
    declared = parse_specs([parse_param_option("level:enum(1|2)")])
    assert declared[0].choices == ["1", "2"]
    assert validate_params(declared, {"level": 1}) == {"level": "1"}


def test_a_numeric_enum_takes_an_equal_number_of_the_other_kind() -> None:
    """Regression (found here after 0698e0f, fixed since): 2.0 must match the choice 2
    and 1 the choice 1.0, as an integer parameter takes 2.0 as 2; JSON senders such as
    Python's json.dumps(2.0) send 2.0."""
    assert coerce(spec("integer"), 2.0) == 2
    assert coerce(spec("enum", choices=[1, 2]), 2.0) == 2
    assert coerce(spec("enum", choices=[1.0, 2.0]), 1) == 1.0


# -- validate_params ---------------------------------------------------------------------------
DECLARED = [
    {"name": "day", "type": "date", "required": True},
    {"name": "limit", "type": "integer", "default": 100},
    {"name": "dry_run", "type": "boolean", "default": False},
    {"name": "mode", "type": "enum", "choices": ["fast", "full"], "default": "fast"},
    {"name": "since", "type": "datetime"},
    {"name": "ratio", "type": "number"},
    {"name": "label", "type": "string"},
]


def test_values_from_a_query_string_are_converted_and_defaults_filled_in() -> None:
    specs = parse_specs(DECLARED)
    values = validate_params(
        specs,
        {"day": "2026-11-22", "limit": "250", "dry_run": "yes", "ratio": "0.5", "label": "x"},
        job="export",
    )
    assert values == {
        "day": "2026-11-22",
        "limit": 250,
        "dry_run": True,
        "mode": "fast",
        "ratio": 0.5,
        "label": "x",
    }


def test_optional_parameters_without_default_are_left_out() -> None:
    values = validate_params(parse_specs(DECLARED), {"day": "2026-01-02"})
    assert values == {"day": "2026-01-02", "limit": 100, "dry_run": False, "mode": "fast"}
    assert "since" not in values


def test_falsy_defaults_are_filled_in_too() -> None:
    specs = parse_specs(
        [
            {"name": "flag", "type": "boolean", "default": False},
            {"name": "count", "type": "integer", "default": 0},
            {"name": "text", "type": "string", "default": ""},
        ]
    )
    assert validate_params(specs, {}) == {"flag": False, "count": 0, "text": ""}


def test_a_given_null_counts_as_not_given() -> None:
    specs = parse_specs(DECLARED)
    assert validate_params(specs, {"day": "2026-01-02", "limit": None})["limit"] == 100
    with pytest.raises(InvalidRequest, match=r"parameter 'day' is required"):
        validate_params(specs, {"day": None})


def test_a_missing_required_parameter_is_named_with_its_type() -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_params(parse_specs(DECLARED), {}, job="export")
    assert caught.value.message == (
        "Invalid parameters of job 'export': parameter 'day' is required (a date like 2026-11-22)."
    )


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_params(
            parse_specs(DECLARED), {"limit": "many", "mode": "slow", "since": "2026-11-22T06:00"}
        )
    message = caught.value.message
    assert message.startswith("Invalid parameters: ")
    assert "parameter 'day' is required (a date like 2026-11-22)" in message
    assert "parameter 'limit' must be a whole number, got 'many'" in message
    assert "parameter 'mode' must be one of 'fast', 'full', got 'slow'" in message
    assert "parameter 'since' must be a date and time like" in message
    assert "(add a UTC offset, e.g. +00:00 or Z)" in message
    assert message.endswith(".")


def test_unknown_parameters_are_refused_listing_the_declared_ones() -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_params(parse_specs(DECLARED[:2]), {"day": "2026-01-01", "dya": 1, "x": 2}, job="j")
    assert caught.value.message == (
        "Unknown parameter 'dya', 'x' of job 'j'; its parameters are: day (date), limit (integer)."
    )


def test_a_job_without_declared_parameters_takes_anything_as_it_is() -> None:
    given = {"anything": [1, 2], "n": "3", "nested": {"a": None}, "flag": "yes"}
    values = validate_params([], given, job="free")
    assert values == given
    assert values is not given
    assert validate_params(parse_specs([]), {}) == {}


# -- declarations ------------------------------------------------------------------------------
def test_parse_specs_fills_in_defaults_and_coerces_the_default() -> None:
    specs = parse_specs(
        [
            {"name": "n"},
            {"name": "limit", "type": "integer", "default": "100", "description": "rows"},
            {"name": "on", "type": "boolean", "default": "off"},
            {"name": "mode", "type": "enum", "choices": ["a", "b"], "default": "b"},
        ]
    )
    assert [(s.name, s.type, s.required, s.default) for s in specs] == [
        ("n", "string", False, None),
        ("limit", "integer", False, 100),
        ("on", "boolean", False, False),
        ("mode", "enum", False, "b"),
    ]
    assert specs[1].description == "rows"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "day"}, "parameters must be a list of {name, type, required, default, ...}."),
        ("day", "parameters must be a list"),
        ([{"name": "1day"}], "parameters[0].name: String should match pattern"),
        ([{"name": "my-day"}], "parameters[0].name: String should match pattern"),
        ([{"name": ""}], "parameters[0].name: String should match pattern"),
        ([{"name": "x" * 65}], "parameters[0].name: String should match pattern"),
        ([{"type": "string"}], "parameters[0].name: Field required"),
        ([{"name": "a"}, {"name": "b", "type": "decimal"}], "parameters[1].type: Input should be"),
        ([{"name": "mode", "type": "enum"}], "parameter 'mode' is an enum: give its choices"),
        (
            [{"name": "mode", "type": "enum", "choices": []}],
            "parameter 'mode' is an enum: give its choices",
        ),
        (
            [{"name": "n", "type": "integer", "choices": [1, 2]}],
            "parameter 'n': choices are for type enum only",
        ),
        (
            [{"name": "n", "type": "integer", "default": "many"}],
            "default of parameter 'n' must be a whole number, got 'many'",
        ),
        (
            [{"name": "d", "type": "date", "default": "tomorrow"}],
            "default of parameter 'd' must be a date like 2026-11-22, got 'tomorrow'",
        ),
        (
            [{"name": "m", "type": "enum", "choices": ["a"], "default": "z"}],
            "default of parameter 'm' must be one of 'a', got 'z'",
        ),
        ([{"name": "a", "colour": "red"}], "parameters[0].colour: Extra inputs are not permitted"),
        ([{"name": "a"}, {"name": "b"}, {"name": "a"}], "parameters: a declared more than once."),
        (["a"], "parameters[0]"),
    ],
)
def test_parse_specs_refuses_bad_declarations_saying_where(raw: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_specs(raw)
    assert message in caught.value.message


def test_a_wrong_type_lists_the_types() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_specs([{"name": "a", "type": "decimal"}])
    assert caught.value.message.endswith(f"(types: {', '.join(TYPES)})")


def test_duplicates_are_listed_once_each_sorted() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_specs([{"name": n} for n in ("b", "a", "b", "a", "b", "c")])
    assert caught.value.message == "parameters: a, b declared more than once."


# -- the CLI shorthand ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name", {"name": "name", "type": "string"}),
        ("day:date", {"name": "day", "type": "date"}),
        ("day:date:required", {"name": "day", "type": "date", "required": True}),
        ("limit:integer=100", {"name": "limit", "type": "integer", "default": "100"}),
        ("note=hello world", {"name": "note", "type": "string", "default": "hello world"}),
        ("empty:string=", {"name": "empty", "type": "string", "default": ""}),
        (
            "mode:enum(fast|full)=fast",
            {"name": "mode", "type": "enum", "choices": ["fast", "full"], "default": "fast"},
        ),
        (
            "mode:enum(fast|full):required",
            {"name": "mode", "type": "enum", "choices": ["fast", "full"], "required": True},
        ),
        (
            "at:datetime=2026-11-22T06:00:00+01:00",
            {"name": "at", "type": "datetime", "default": "2026-11-22T06:00:00+01:00"},
        ),
        (
            "day:date:required=2026-01-01",
            {"name": "day", "type": "date", "required": True, "default": "2026-01-01"},
        ),
        ("  _x1:boolean=true  ", {"name": "_x1", "type": "boolean", "default": "true"}),
    ],
)
def test_parse_param_option_forms(text: str, expected: dict[str, Any]) -> None:
    assert parse_param_option(text) == expected


def test_the_shorthand_makes_valid_declarations_with_typed_defaults() -> None:
    specs = parse_specs(
        [
            parse_param_option(t)
            for t in ("day:date:required", "limit:integer=100", "on:boolean=yes", "m:enum(a|b)=b")
        ]
    )
    assert [(s.name, s.type, s.required, s.default) for s in specs] == [
        ("day", "date", True, None),
        ("limit", "integer", False, 100),
        ("on", "boolean", False, True),
        ("m", "enum", False, "b"),
    ]
    assert specs[3].choices == ["a", "b"]


@pytest.mark.parametrize("text", ["1day:date", "my-day", "a b", "x:=5", ":date", "", "day:date:"])
def test_parse_param_option_refuses_other_text_with_examples(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_param_option(text)
    message = caught.value.message
    assert message.startswith(f"--param {text!r} is not valid")
    assert "name:type[:required][=default]" in message
    assert "mode:enum(fast|full)=fast" in message


def test_an_unknown_type_in_the_shorthand_is_refused_when_declared() -> None:
    with pytest.raises(InvalidRequest, match=r"parameters\[0\]\.type: .*\(types: string, "):
        parse_specs([parse_param_option("n:int")])
