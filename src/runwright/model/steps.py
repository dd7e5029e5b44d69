"""The definition of a multi-step job (``job.yaml``) and the inputs of each step action.

Everything here is checked at deploy time, so that a typo is a refused deploy naming
the bad field (``steps[2].with.methd``), not a failed run at 3 a.m. Inputs that hold
``{{ references }}`` can only be type-checked once rendered, at run time, against the
same models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from runwright.errors import InvalidRequest
from runwright.model.references import (
    check_condition,
    check_template,
    has_reference,
    referenced_steps,
)
from runwright.model.targets import TargetSelector

STEP_ID = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
ACTIONS = ("python", "shell", "http", "sql", "file", "sftp")
MAX_STEPS = 500


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# -- inputs of each action ------------------------------------------------------------
class HttpAuth(_Strict):
    type: Literal["basic", "bearer"]
    username: str | None = None
    password: str | None = None
    token: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> HttpAuth:
        if self.type == "basic" and (self.username is None or self.password is None):
            raise ValueError("basic auth needs username and password")
        if self.type == "bearer" and not self.token:
            raise ValueError("bearer auth needs token")
        return self


class HttpInputs(_Strict):
    url: Annotated[str, Field(min_length=1)]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, Any] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    auth: HttpAuth | None = None
    timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] | None = None
    follow_redirects: bool = True
    verify_tls: bool = True

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _one_body(self) -> HttpInputs:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give json or body, not both")
        return self


class SqlInputs(_Strict):
    connection: Annotated[str, Field(min_length=1)]  # a variable holding a SQLAlchemy URL
    query: Annotated[str, Field(min_length=1)]
    params: dict[str, Any] = Field(default_factory=dict)
    max_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000


class FileInputs(_Strict):
    action: Literal["write", "read"]
    format: Literal["csv", "json", "xlsx"] | None = None
    filename: str | None = None
    rows: list[Any] | None = None
    columns: list[str] | None = None
    sheet: str | None = None
    path: str | None = None
    max_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 100_000

    @model_validator(mode="after")
    def _complete(self) -> FileInputs:
        if self.action == "write":
            if not self.filename:
                raise ValueError("write needs filename (e.g. report.xlsx)")
            if self.rows is None:
                raise ValueError("write needs rows (a list of objects or of lists)")
        elif not self.path:
            raise ValueError("read needs path (e.g. '{{ files[0].path }}')")
        return self


class SftpInputs(_Strict):
    action: Literal["upload", "download"]
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    username: Annotated[str, Field(min_length=1)]
    password: str | None = None
    private_key: str | None = None
    passphrase: str | None = None
    host_key: str | None = None  # "ssh-ed25519 AAAA..."; without it any key is accepted
    files: list[str] | str  # upload: names in this run's output; download: remote paths
    remote_dir: str = "."
    timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0

    @model_validator(mode="after")
    def _complete(self) -> SftpInputs:
        if not self.password and not self.private_key:
            raise ValueError("give password or private_key")
        return self


class ShellInputs(_Strict):
    command: Annotated[str, Field(min_length=1)]
    env: dict[str, str] = Field(default_factory=dict)


class PythonInputs(_Strict):
    function: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]
    inputs: dict[str, Any] = Field(default_factory=dict)


class SshInputs(_Strict):
    """Run ``command`` on every target of the step (its ``targets``) over SSH."""

    command: Annotated[str, Field(min_length=1, max_length=100_000)]


INPUTS: dict[str, type[_Strict]] = {
    "ssh": SshInputs,
    "http": HttpInputs,
    "sql": SqlInputs,
    "file": FileInputs,
    "sftp": SftpInputs,
    "shell": ShellInputs,
    "python": PythonInputs,
}


# -- the definition -------------------------------------------------------------------
TARGETED_ACTIONS = ("ssh", "python")  # actions that run once per target of the step


class Retries(_Strict):
    count: Annotated[int, Field(ge=0, le=100)] = 0
    backoff: Annotated[float, Field(ge=0, le=3600)] = 1.0  # seconds, doubled per retry
    max_backoff: Annotated[float, Field(ge=0, le=86400)] = 300.0

    def delay(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (1-based)."""
        return float(min(self.max_backoff, self.backoff * 2 ** max(0, retry - 1)))


class StepSpec(_Strict):
    id: Annotated[str, Field(pattern=STEP_ID)]
    uses: Literal["python", "shell", "http", "sql", "file", "sftp", "ssh"]
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    targets: TargetSelector | None = None
    name: str | None = None
    when: str | None = None
    timeout: Annotated[float, Field(gt=0, le=7 * 86400)] | None = None
    retries: Retries = Field(default_factory=Retries)
    continue_on_error: bool = False

    @field_validator("retries", mode="before")
    @classmethod
    def _count_alone(cls, value: Any) -> Any:
        return {"count": value} if isinstance(value, int) and not isinstance(value, bool) else value

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class StepsDefinition(_Strict):
    description: str = ""
    steps: Annotated[list[StepSpec], Field(min_length=1, max_length=MAX_STEPS)]

    def step_ids(self) -> list[str]:
        return [step.id for step in self.steps]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


def _location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _describe(error: ValidationError, prefix: str = "") -> str:
    problems = []
    for item in error.errors()[:10]:
        location = _location(tuple(item["loc"]))
        if prefix:
            location = prefix if location == "(top level)" else f"{prefix}.{location}"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "is not a known field"
        problems.append(f"{location}: {message}")
    return "; ".join(problems)


def parse_definition(data: Any, *, source: str = "job.yaml") -> StepsDefinition:
    """Validate a steps definition; every problem names the path of its field."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"{source} must be a mapping with a 'steps' list.")
    try:
        definition = StepsDefinition.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(f"{source} is not valid: {_describe(exc)}") from exc
    problems: list[str] = []
    seen: list[str] = []
    for index, step in enumerate(definition.steps):
        where = f"steps[{index}]"
        if step.id in seen:
            problems.append(f"{where}.id: {step.id!r} is used by an earlier step; ids must differ")
        if step.uses == "ssh" and step.targets is None:
            problems.append(
                f"{where}.targets: an ssh step needs targets, e.g. "
                "targets: {tags: [web], max_parallel: 10}"
            )
        if step.targets is not None and step.uses not in TARGETED_ACTIONS:
            problems.append(
                f"{where}.targets: {step.uses} steps do not run on targets; "
                f"use {' or '.join(TARGETED_ACTIONS)}"
            )
        problems.extend(_check_inputs(step, where))
        problems.extend(_check_references(step, where, seen))
        seen.append(step.id)
    if problems:
        raise InvalidRequest(f"{source} is not valid: " + "; ".join(problems[:10]))
    return definition


def _check_inputs(step: StepSpec, where: str) -> list[str]:
    """Known and required fields always; types of fields without references."""
    model = INPUTS[step.uses]
    fields = model.model_fields
    names = {info.alias or name: name for name, info in fields.items()}
    problems = []
    for key in step.with_:
        if key not in names:
            known = ", ".join(sorted(names))
            problems.append(f"{where}.with.{key}: {step.uses} has no input {key!r}; it has {known}")
    for alias, name in names.items():
        if fields[name].is_required() and alias not in step.with_:
            problems.append(f"{where}.with.{alias}: {step.uses} needs this input")
    if problems:
        return problems
    if not _contains_reference(step.with_):
        try:
            model.model_validate(step.with_)
        except ValidationError as exc:
            return [_describe(exc, f"{where}.with")]
        return []
    for alias, name in names.items():
        if alias in step.with_ and not _contains_reference(step.with_[alias]):
            try:
                annotation: Any = fields[name].annotation
                TypeAdapter(annotation).validate_python(step.with_[alias])
            except ValidationError as exc:
                problems.append(_describe(exc, f"{where}.with.{alias}"))
    return problems


def _check_references(step: StepSpec, where: str, earlier: list[str]) -> list[str]:
    problems = []
    texts: list[tuple[str, str]] = list(_strings(step.with_, f"{where}.with"))
    if step.when is not None:
        try:
            check_condition(step.when)
        except InvalidRequest as exc:
            problems.append(f"{where}.when: {exc.message}")
        when = step.when if has_reference(step.when) else "{{ " + step.when + " }}"
        texts.append((f"{where}.when", when))
    for path, text in texts:
        if not has_reference(text):
            continue
        try:
            check_template(text)
        except InvalidRequest as exc:
            problems.append(f"{path}: {exc.message}")
            continue
        for name in sorted(referenced_steps(text)):
            if name not in earlier:
                before = ", ".join(earlier) or "none"
                problems.append(
                    f"{path}: refers to steps.{name}, which is not an earlier step "
                    f"(earlier steps: {before})"
                )
    return problems


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in _strings(v, f"{path}[{i}]")]
    return []


def _contains_reference(value: Any) -> bool:
    return any(has_reference(text) for _, text in _strings(value, ""))


def validate_inputs(action: str, rendered: dict[str, Any], step_id: str) -> Any:
    """Run-time check of rendered inputs; the error names the step and the field."""
    try:
        return INPUTS[action].model_validate(rendered)
    except ValidationError as exc:
        raise InvalidRequest(
            f"step {step_id!r}: inputs are not valid after rendering: {_describe(exc, 'with')}"
        ) from exc
