"""Typed job parameters: what a job declares, and the check every trigger's values
pass before a run is created (CLI, API, schedule, webhook)."""

from __future__ import annotations

import datetime
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from runwright.errors import InvalidRequest

PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
TYPES = ("string", "integer", "number", "boolean", "date", "datetime", "enum")
EXPECTED = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "date": "a date like 2026-11-22",
    "datetime": "a date and time like 2026-11-22T06:00:00+01:00",
}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class ParameterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=PARAM_NAME)
    type: Literal["string", "integer", "number", "boolean", "date", "datetime", "enum"] = "string"
    required: bool = False
    default: Any = None
    description: str = Field(default="", max_length=1000)
    choices: list[str | int | float] | None = None  # for enum

    @model_validator(mode="after")
    def _consistent(self) -> ParameterSpec:
        if self.type == "enum" and not self.choices:
            raise ValueError(f"parameter {self.name!r} is an enum: give its choices")
        if self.type != "enum" and self.choices:
            raise ValueError(f"parameter {self.name!r}: choices are for type enum only")
        if self.default is not None:
            try:
                self.default = coerce(self, self.default)
            except InvalidRequest as exc:
                raise ValueError(f"default of {exc.message}") from exc
        return self

    def expected(self) -> str:
        if self.type == "enum":
            return "one of " + ", ".join(repr(c) for c in self.choices or [])
        return EXPECTED[self.type]


def parse_specs(raw: Any) -> list[ParameterSpec]:
    """Validate a job's parameter declarations (a list of objects)."""
    if not isinstance(raw, list):
        raise InvalidRequest("parameters must be a list of {name, type, required, default, ...}.")
    specs = []
    for index, item in enumerate(raw):
        try:
            specs.append(ParameterSpec.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "parameter"
            message = first["msg"].removeprefix("Value error, ")
            raise InvalidRequest(
                f"parameters[{index}].{where}: {message}"
                + (f" (types: {', '.join(TYPES)})" if where == "type" else "")
            ) from exc
    names = [spec.name for spec in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidRequest(f"parameters: {', '.join(duplicates)} declared more than once.")
    return specs


def coerce(spec: ParameterSpec, value: Any) -> Any:
    """The value as JSON of the declared type; text is converted (query strings and
    form fields are text), anything else unfit raises InvalidRequest naming why."""
    problem = f"parameter {spec.name!r} must be {spec.expected()}, got {value!r}"
    kind = spec.type
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise InvalidRequest(problem)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise InvalidRequest(problem)
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            return int(value)
        raise InvalidRequest(problem)
    if kind == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                raise InvalidRequest(problem)
            return value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise InvalidRequest(problem) from None
            if number != number or number in (float("inf"), float("-inf")):
                raise InvalidRequest(problem)
            return int(number) if re.fullmatch(r"\s*[-+]?\d+\s*", value) else number
        raise InvalidRequest(problem)
    if kind == "date":
        if isinstance(value, str):
            try:
                return datetime.date.fromisoformat(value.strip()).isoformat()
            except ValueError:
                pass
        raise InvalidRequest(problem)
    if kind == "datetime":
        if isinstance(value, str):
            try:
                parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise InvalidRequest(problem) from None
            if parsed.tzinfo is None:
                raise InvalidRequest(f"{problem} (add a UTC offset, e.g. +00:00 or Z)")
            return parsed.isoformat()
        raise InvalidRequest(problem)
    # enum: the choices are compared as given, or as text for values from query strings
    if isinstance(value, bool):
        raise InvalidRequest(problem)  # True == 1 in Python; not as a choice
    for choice in spec.choices or []:
        numbers = isinstance(value, int | float) and isinstance(choice, int | float)
        if value == choice and (numbers or type(value) is type(choice)):
            return choice
    # Text and numbers meet as text: a query string sends "2", a CLI declaration
    # (enum(1|2)) holds "2", and `-p level=2` sends the number.
    for choice in spec.choices or []:
        if isinstance(value, str | int | float) and str(value) == str(choice):
            return choice
    raise InvalidRequest(problem)


def validate_params(
    specs: list[ParameterSpec], given: dict[str, Any], *, job: str = ""
) -> dict[str, Any]:
    """Check a trigger's values against the declarations: defaults filled in, text
    converted, unknown and missing parameters refused. A job that declares none
    takes any parameters as they are."""
    if not specs:
        return dict(given)
    known = {spec.name: spec for spec in specs}
    unknown = sorted(set(given) - set(known))
    of_job = f" of job {job!r}" if job else ""
    if unknown:
        raise InvalidRequest(
            f"Unknown parameter {', '.join(map(repr, unknown))}{of_job}; its parameters are: "
            + ", ".join(f"{s.name} ({s.type})" for s in specs)
            + "."
        )
    values: dict[str, Any] = {}
    problems = []
    for spec in specs:
        if spec.name in given and given[spec.name] is not None:
            try:
                values[spec.name] = coerce(spec, given[spec.name])
            except InvalidRequest as exc:
                problems.append(exc.message)
        elif spec.default is not None:
            values[spec.name] = spec.default
        elif spec.required:
            problems.append(f"parameter {spec.name!r} is required ({spec.expected()})")
    if problems:
        raise InvalidRequest(f"Invalid parameters{of_job}: " + "; ".join(problems) + ".")
    return values


def parse_param_option(text: str) -> dict[str, Any]:
    """CLI shorthand ``name:type[:required][=default]``; enum as ``mode:enum(a|b)=a``."""
    match = re.fullmatch(
        r"(?P<name>[A-Za-z_]\w*)(?::(?P<type>\w+)(?:\((?P<choices>[^)]*)\))?)?"
        r"(?P<required>:required)?(?:=(?P<default>.*))?",
        text.strip(),
    )
    if match is None:
        raise InvalidRequest(
            f"--param {text!r} is not valid; use name:type[:required][=default], e.g. "
            "day:date:required, limit:integer=100, mode:enum(fast|full)=fast."
        )
    kind = match["type"] or "string"
    required = bool(match["required"])
    if kind == "required":  # name:required (a required string)
        kind, required = "string", True
    spec: dict[str, Any] = {"name": match["name"], "type": kind}
    if match["choices"] is not None:
        spec["choices"] = [c for c in match["choices"].split("|") if c]
    if required:
        spec["required"] = True
    if match["default"] is not None:
        spec["default"] = match["default"]
    return spec
