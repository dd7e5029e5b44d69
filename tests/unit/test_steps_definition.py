"""job.yaml: what parse_definition accepts, and that every refusal names the field's
path (``steps[1].with.methd``); also through a package zip (inspect_package)."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest

from runwright.artifacts.package import build_from_files, inspect_package
from runwright.errors import InvalidRequest
from runwright.model.steps import (
    ACTIONS,
    FileInputs,
    HttpInputs,
    PythonInputs,
    Retries,
    ShellInputs,
    StepsDefinition,
    parse_definition,
    validate_inputs,
)

VALID_INPUTS: dict[str, dict[str, Any]] = {
    "python": {"function": "lib.transform:run", "inputs": {"rows": [1, 2], "mode": "fast"}},
    "shell": {"command": "echo hello", "env": {"A": "1"}},
    "http": {
        "url": "https://api.example.com/users",
        "method": "post",
        "headers": {"Accept": "application/json"},
        "query": {"page": 1},
        "json": {"name": "Ada"},
        "auth": {"type": "bearer", "token": "t0k"},
        "timeout": 10,
        "expect_status": [200, 201],
    },
    "sql": {
        "connection": "{{ variables.warehouse }}",
        "query": "select * from t where day = :day",
        "params": {"day": "2026-11-22"},
        "max_rows": 100,
    },
    "file": {"action": "write", "format": "csv", "filename": "out.csv", "rows": [{"a": 1}]},
    "sftp": {
        "action": "upload",
        "host": "sftp.example.com",
        "username": "u",
        "password": "p",
        "files": ["out.csv"],
        "remote_dir": "/in",
    },
}


def step(step_id: str = "a", uses: str = "shell", **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": step_id, "uses": uses}
    spec["with"] = fields.pop("with_", VALID_INPUTS[uses])
    spec.update(fields)
    return spec


def definition(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"steps": list(steps), **top}


def refused(data: Any, source: str = "job.yaml") -> str:
    with pytest.raises(InvalidRequest) as caught:
        parse_definition(data, source=source)
    message = caught.value.message
    assert message.startswith(source)
    return message


# -- accepted ------------------------------------------------------------------------------------
def test_the_actions_are_the_ones_with_inputs() -> None:
    assert set(ACTIONS) == set(VALID_INPUTS)


@pytest.mark.parametrize("uses", ACTIONS)
def test_each_action_with_valid_inputs_is_accepted(uses: str) -> None:
    parsed = parse_definition(definition(step("only", uses)))
    assert isinstance(parsed, StepsDefinition)
    assert parsed.step_ids() == ["only"]
    assert parsed.steps[0].uses == uses
    assert parsed.steps[0].with_ == VALID_INPUTS[uses]
    # What parse_definition accepted is what the run will check again (the literal ones).
    if "{{" not in str(VALID_INPUTS[uses]):
        validate_inputs(uses, VALID_INPUTS[uses], "only")


def test_a_full_definition_with_every_step_field() -> None:
    data = definition(
        step("fetch", "http", name="Fetch users", timeout=30, retries=2),
        step(
            "transform",
            "python",
            with_={
                "function": "lib.transform:run",
                "inputs": {"users": "{{ steps.fetch.output.body }}", "day": "{{ params.day }}"},
            },
            when="steps.fetch.output.status == 200",
            continue_on_error=True,
        ),
        step(
            "notify",
            "shell",
            with_={"command": "echo {{ steps.transform.output | tojson }}"},
            when="{{ steps.transform.status == 'succeeded' }}",
            retries={"count": 3, "backoff": 0.5, "max_backoff": 2},
        ),
        description="Nightly user export",
    )
    parsed = parse_definition(data)
    assert parsed.description == "Nightly user export"
    assert parsed.step_ids() == ["fetch", "transform", "notify"]
    fetch, transform, notify = parsed.steps
    assert (fetch.name, fetch.timeout, fetch.retries.count) == ("Fetch users", 30, 2)
    assert transform.continue_on_error is True
    assert transform.when == "steps.fetch.output.status == 200"
    assert notify.retries == Retries(count=3, backoff=0.5, max_backoff=2)
    assert fetch.continue_on_error is False
    again = parse_definition(parsed.to_json())
    assert again == parsed
    assert parsed.to_json()["steps"][0]["with"] == VALID_INPUTS["http"]


def test_defaults() -> None:
    parsed = parse_definition(definition(step()))
    spec = parsed.steps[0]
    assert (spec.name, spec.when, spec.timeout, spec.continue_on_error) == (None, None, None, False)
    assert spec.retries == Retries(count=0, backoff=1.0, max_backoff=300.0)
    assert parsed.description == ""
    shell = parse_definition(definition(step(with_={"command": "true"}))).steps[0]
    assert shell.with_ == {"command": "true"}


def test_retries_shorthand_int_and_object() -> None:
    short = parse_definition(definition(step(retries=4))).steps[0].retries
    assert short == Retries(count=4)
    full = parse_definition(definition(step(retries={"count": 2, "backoff": 0}))).steps[0]
    assert (full.retries.count, full.retries.backoff) == (2, 0)


def test_retry_delays_double_up_to_the_cap() -> None:
    retries = Retries(count=5, backoff=1.0, max_backoff=5.0)
    assert [retries.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert Retries(backoff=0).delay(3) == 0.0


def test_step_ids_allow_letters_digits_dash_and_underscore() -> None:
    ids = ["a", "_private", "Fetch_Users-2", "x" * 64]
    parsed = parse_definition(definition(*(step(i) for i in ids)))
    assert parsed.step_ids() == ids


def test_references_to_earlier_steps_params_variables_webhook_and_files() -> None:
    parse_definition(
        definition(
            step("first"),
            step(
                "second",
                "http",
                with_={
                    "url": "https://x/{{ params.day }}/{{ variables.region }}",
                    "headers": {"X-Id": "{{ webhook.headers['X-Request-Id'] }}"},
                    "json": {
                        "prev": "{{ steps.first.output.stdout }}",
                        "by_key": "{{ steps['first'].status }}",
                        "file": "{{ files[0].path }}",
                    },
                },
            ),
        )
    )


def test_an_input_with_a_reference_is_type_checked_only_at_run_time() -> None:
    parse_definition(
        definition(step(uses="http", with_={"url": "https://x", "timeout": "{{ params.t }}"}))
    )
    with pytest.raises(InvalidRequest) as caught:
        validate_inputs("http", {"url": "https://x", "timeout": "soon"}, "fetch")
    assert caught.value.message.startswith("step 'fetch': inputs are not valid after rendering")
    assert "with.timeout" in caught.value.message


def test_validate_inputs_returns_the_typed_model() -> None:
    assert isinstance(validate_inputs("shell", {"command": "ls"}, "s"), ShellInputs)
    http = validate_inputs("http", {"url": "http://x", "method": "delete"}, "h")
    assert isinstance(http, HttpInputs)
    assert http.method == "DELETE"
    assert isinstance(validate_inputs("python", {"function": "m:f"}, "p"), PythonInputs)
    read = validate_inputs("file", {"action": "read", "path": "a/b.csv"}, "f")
    assert isinstance(read, FileInputs)


# -- refused, naming the path --------------------------------------------------------------------
def test_not_a_mapping() -> None:
    for data in (None, [], "steps", 3):
        assert "must be a mapping with a 'steps' list" in refused(data)


def test_missing_or_empty_steps() -> None:
    assert "steps: Field required" in refused({})
    assert "steps: List should have at least 1 item" in refused({"steps": []})
    assert "steps: Input should be a valid list" in refused({"steps": "a"})


def test_unknown_top_level_and_step_fields() -> None:
    assert "descripton: is not a known field" in refused(definition(step(), descripton="x"))
    assert "steps[0].retry: is not a known field" in refused(definition(step(retry=1)))


def test_unknown_uses() -> None:
    message = refused(definition(step(), {"id": "b", "uses": "ftp", "with": {}}))
    assert "steps[1].uses:" in message
    assert "'python', 'shell', 'http', 'sql', 'file', 'sftp' or 'ssh'" in message


def test_missing_id() -> None:
    assert "steps[1].id: Field required" in refused(
        definition(step("a"), {"uses": "shell", "with": {"command": "x"}})
    )


def test_duplicate_id() -> None:
    message = refused(definition(step("a"), step("b"), step("a")))
    assert "steps[2].id: 'a' is used by an earlier step; ids must differ" in message


@pytest.mark.parametrize("bad", ["1st", "has space", "dot.ted", "", "x" * 65, "é", "a/b"])
def test_bad_id_pattern(bad: str) -> None:
    message = refused(definition(step("ok"), step(bad)))
    assert "steps[1].id: String should match pattern" in message


def test_unknown_input_key_names_the_path_and_the_known_inputs() -> None:
    message = refused(
        definition(step("a"), step("b", "http", with_={"url": "https://x", "methd": "GET"}))
    )
    assert "steps[1].with.methd: http has no input 'methd'" in message
    assert "it has auth, body, expect_status" in message
    assert "method" in message


def test_unknown_input_key_of_another_action() -> None:
    message = refused(definition(step(with_={"command": "ls", "cwd": "/tmp"})))
    assert "steps[0].with.cwd: shell has no input 'cwd'; it has command, env" in message


def test_every_problem_is_named_not_only_the_first() -> None:
    message = refused(
        definition(step(uses="http", with_={"url": "https://x", "methd": "GET", "timout": 1}))
    )
    assert "steps[0].with.methd" in message
    assert "steps[0].with.timout" in message


@pytest.mark.parametrize(
    ("uses", "inputs", "missing"),
    [
        ("shell", {}, "command"),
        ("python", {"inputs": {}}, "function"),
        ("http", {"method": "GET"}, "url"),
        ("sql", {"query": "select 1"}, "connection"),
        ("file", {"format": "csv"}, "action"),
        ("sftp", {"action": "upload", "host": "h", "password": "p", "files": "x"}, "username"),
    ],
)
def test_missing_required_input(uses: str, inputs: dict[str, Any], missing: str) -> None:
    message = refused(definition(step("first"), step("s", uses, with_=inputs)))
    assert f"steps[1].with.{missing}: {uses} needs this input" in message


@pytest.mark.parametrize(
    ("uses", "inputs", "path", "words"),
    [
        ("shell", {"command": 5}, "with.command", "valid string"),
        ("shell", {"command": ""}, "with.command", "at least 1 character"),
        ("shell", {"command": "x", "env": ["A=1"]}, "with.env", "valid dictionary"),
        ("http", {"url": "https://x", "timeout": "soon"}, "with.timeout", "valid number"),
        ("http", {"url": "https://x", "timeout": 0}, "with.timeout", "greater than 0"),
        ("http", {"url": "ftp://x"}, "with.url", "must start with http:// or https://"),
        ("http", {"url": "https://x", "method": "FETCH"}, "with.method", "'GET', 'POST'"),
        ("http", {"url": "https://x", "expect_status": [700]}, "with.expect_status[0]", "599"),
        ("http", {"url": "https://x", "auth": {"type": "basic"}}, "with.auth", "username"),
        ("http", {"url": "https://x", "json": {}, "body": "x"}, "with", "not both"),
        ("python", {"function": "no_colon"}, "with.function", "should match pattern"),
        ("python", {"function": "m:f", "inputs": [1]}, "with.inputs", "valid dictionary"),
        (
            "sql",
            {"connection": "c", "query": "q", "max_rows": 0},
            "with.max_rows",
            "greater than or equal to 1",
        ),
        ("file", {"action": "delete"}, "with.action", "'write' or 'read'"),
        ("file", {"action": "write", "filename": "a.csv"}, "with", "write needs rows"),
        ("file", {"action": "read"}, "with", "read needs path"),
        (
            "sftp",
            {"action": "upload", "host": "h", "username": "u", "files": "a"},
            "with",
            "give password or private_key",
        ),
    ],
)
def test_wrong_type_or_value_of_a_literal_input(
    uses: str, inputs: dict[str, Any], path: str, words: str
) -> None:
    message = refused(definition(step("first"), step("s", uses, with_=inputs)))
    assert f"steps[1].{path}: " in message
    assert words.lower() in message.lower()


def test_a_literal_input_is_checked_even_next_to_a_reference() -> None:
    message = refused(
        definition(step(uses="http", with_={"url": "{{ params.url }}", "timeout": "soon"}))
    )
    assert "steps[0].with.timeout: Input should be a valid number" in message


def test_with_must_be_a_mapping() -> None:
    assert "steps[0].with: Input should be a valid dictionary" in refused(
        definition(step(with_="echo hi"))
    )


def test_a_reference_to_a_later_step() -> None:
    message = refused(
        definition(
            step("first"),
            step("uses_later", with_={"command": "echo {{ steps.later.output.stdout }}"}),
            step("later"),
        )
    )
    assert (
        "steps[1].with.command: refers to steps.later, which is not an earlier step "
        "(earlier steps: first)" in message
    )


def test_a_reference_to_an_unknown_step_by_key() -> None:
    message = refused(
        definition(step("first"), step("b", with_={"command": "{{ steps['nope'].output }}"}))
    )
    assert "steps[1].with.command: refers to steps.nope" in message


def test_a_step_cannot_read_its_own_output() -> None:
    message = refused(definition(step("a", with_={"command": "echo {{ steps.a.output }}"})))
    assert "refers to steps.a, which is not an earlier step (earlier steps: none)" in message


def test_a_reference_deep_inside_an_input_names_its_path() -> None:
    message = refused(
        definition(
            step("first"),
            step(
                "call",
                "http",
                with_={"url": "https://x", "json": {"rows": [1, {"v": "{{ steps.zz.output }}"}]}},
            ),
        )
    )
    assert "steps[1].with.json.rows[1].v: refers to steps.zz" in message


def test_a_template_syntax_error() -> None:
    message = refused(
        definition(step("first"), step("b", with_={"command": "echo {{ steps.first.output "}))
    )
    assert "steps[1].with.command: reference 'echo {{ steps.first.output ' is not valid" in message


def test_a_block_syntax_error() -> None:
    message = refused(definition(step(with_={"command": "{% for x in params.rows %}{{ x }}"})))
    assert "steps[0].with.command: reference" in message
    assert "is not valid" in message


@pytest.mark.parametrize("when", ["params.x ==", "{{ params.x == }}", "steps.a.output )"])
def test_a_bad_when(when: str) -> None:
    message = refused(definition(step("a"), step("b", when=when)))
    assert "steps[1].when: " in message
    assert "is not valid" in message


def test_a_when_reading_a_later_step() -> None:
    message = refused(definition(step("a", when="steps.b.output.ok"), step("b")))
    assert "steps[0].when: refers to steps.b, which is not an earlier step" in message


def test_a_when_must_be_a_string() -> None:
    assert "steps[0].when: Input should be a valid string" in refused(definition(step(when=True)))


@pytest.mark.parametrize("retries", [-1, 101, {"count": -2}, {"cnt": 3}, True, "3x"])
def test_bad_retries(retries: Any) -> None:
    assert "steps[0].retries" in refused(definition(step(retries=retries)))


@pytest.mark.parametrize("timeout", [0, -1, -0.5, 8 * 86400, "soon"])
def test_bad_timeout(timeout: Any) -> None:
    assert "steps[0].timeout: " in refused(definition(step(timeout=timeout)))


def test_continue_on_error_must_be_a_boolean() -> None:
    assert "steps[0].continue_on_error" in refused(definition(step(continue_on_error="maybe")))


def test_too_many_steps() -> None:
    message = refused(definition(*(step(f"s{i}") for i in range(501))))
    assert "steps: List should have at most 500 items" in message


def test_the_source_names_where_the_definition_came_from() -> None:
    message = refused(definition(step(bad=1)), source="the definition")
    assert message.startswith("the definition is not valid: steps[0].bad")


# -- through a package ---------------------------------------------------------------------------
JOB_YAML = """\
description: Export users
steps:
  - id: fetch
    uses: shell
    with:
      command: "echo 3"
  - id: transform
    uses: python
    with:
      function: lib.transform:run
      inputs:
        raw: "{{ steps.fetch.output.stdout }}"
"""


def raw_zip(files: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buffer.getvalue()


def package_refused(files: dict[str, str | bytes]) -> str:
    with pytest.raises(InvalidRequest) as caught:
        inspect_package(raw_zip(files))
    return caught.value.message


def test_a_package_with_job_yaml_is_a_steps_package() -> None:
    manifest = inspect_package(
        raw_zip({"job.yaml": JOB_YAML, "lib/transform.py": "def run(raw): 1"})
    )
    assert manifest.is_steps
    assert manifest.entrypoint == ""
    assert manifest.steps is not None
    assert [s["id"] for s in manifest.steps["steps"]] == ["fetch", "transform"]
    assert manifest.steps["description"] == "Export users"


def test_a_python_module_may_be_a_package_folder() -> None:
    files = {"job.yaml": JOB_YAML, "lib/transform/__init__.py": "def run(raw): 1"}
    assert inspect_package(raw_zip(files)).is_steps


def test_a_steps_package_may_keep_a_runwright_toml_without_entrypoint() -> None:
    files = {
        "job.yaml": JOB_YAML,
        "lib/transform.py": "def run(raw): 1",
        "runwright.toml": 'requirements = []\npython = "3.11"\n',
    }
    manifest = inspect_package(raw_zip(files))
    assert (manifest.is_steps, manifest.python) == (True, "3.11")


def test_built_packages_with_job_yaml_round_trip() -> None:
    built = build_from_files(
        [("job.yaml", JOB_YAML.encode(), False), ("lib/transform.py", b"def run(raw): 1", False)]
    )
    assert built.manifest.is_steps
    assert inspect_package(built.data) == built.manifest


@pytest.mark.parametrize(
    "text",
    ["steps: [\n", "steps:\n  - id: a\n   uses: shell\n", "a: b: c\n", "\tsteps: []\n"],
)
def test_invalid_yaml(text: str) -> None:
    assert package_refused({"job.yaml": text}).startswith("job.yaml is not valid YAML:")


def test_job_yaml_that_is_not_utf8() -> None:
    assert package_refused({"job.yaml": b"\xff\xfe steps"}).startswith("job.yaml is not valid YAML")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n", "42\n"])
def test_job_yaml_that_is_no_mapping(text: str) -> None:
    assert "job.yaml must be a mapping with a 'steps' list" in package_refused({"job.yaml": text})


def test_job_yaml_with_a_bad_field_names_its_path() -> None:
    text = "steps:\n  - id: a\n    uses: http\n    with:\n      url: https://x\n      methd: GET\n"
    message = package_refused({"job.yaml": text})
    assert message.startswith("job.yaml is not valid: steps[0].with.methd: http has no input")


def test_a_python_step_whose_module_is_missing_from_the_package() -> None:
    message = package_refused({"job.yaml": JOB_YAML, "lib/other.py": ""})
    assert message == (
        "job.yaml is not valid: steps[1].with.function: module lib/transform.py is not in "
        "the package"
    )


def test_a_python_step_naming_its_function_by_reference_is_checked_at_run_time() -> None:
    text = "steps:\n  - id: a\n    uses: python\n    with:\n      function: '{{ params.f }}'\n"
    assert inspect_package(raw_zip({"job.yaml": text})).is_steps


def test_runwright_toml_with_an_entrypoint_next_to_job_yaml_is_refused() -> None:
    message = package_refused(
        {
            "job.yaml": JOB_YAML,
            "lib/transform.py": "",
            "runwright.toml": 'entrypoint = "main.py"\n',
            "main.py": "print(1)\n",
        }
    )
    assert "runwright.toml has an entrypoint, but this package has a job.yaml" in message
    assert "Remove the entrypoint" in message


def test_a_package_without_manifest_or_job_yaml_names_both() -> None:
    message = package_refused({"lib/transform.py": ""})
    assert "no runwright.toml (or job.yaml)" in message


def test_job_yaml_must_be_at_the_top_level() -> None:
    message = package_refused({"sub/job.yaml": JOB_YAML, "lib/transform.py": ""})
    assert "no runwright.toml (or job.yaml) at its top level" in message


# -- steps on targets -----------------------------------------------------------------------------
def test_an_ssh_step_needs_targets() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_definition({"steps": [{"id": "up", "uses": "ssh", "with": {"command": "uptime"}}]})
    assert "steps[0].targets: an ssh step needs targets" in caught.value.message


def test_targets_only_on_ssh_and_python_steps() -> None:
    step = {
        "id": "get",
        "uses": "http",
        "targets": {"tags": ["web"]},
        "with": {"url": "http://example.test/"},
    }
    with pytest.raises(InvalidRequest) as caught:
        parse_definition({"steps": [step]})
    assert "steps[0].targets: http steps do not run on targets; use ssh or python" in (
        caught.value.message
    )


def test_a_target_selector_is_checked() -> None:
    bad = {"tags": [], "max_parallel": 0}
    with pytest.raises(InvalidRequest) as caught:
        parse_definition(
            {"steps": [{"id": "up", "uses": "ssh", "targets": bad, "with": {"command": "x"}}]}
        )
    assert "steps[0].targets.tags" in caught.value.message
    assert "steps[0].targets.max_parallel" in caught.value.message
    good = parse_definition(
        {
            "steps": [
                {"id": "up", "uses": "ssh", "targets": {"tags": ["web"]}, "with": {"command": "x"}}
            ]
        }
    )
    assert good.steps[0].targets is not None
    assert good.steps[0].targets.max_parallel == 10
