"""The package format as pure functions: runwright.toml, configuration merging, host
overrides and the secret values to mask."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runwright.errors import InvalidRequest
from runwright.model.manifest import (
    Manifest,
    check_environment,
    environment_of_config_file,
    host_overrides,
    inline_metadata,
    merge_config,
    parse_manifest,
    script_manifest,
    secret_values,
)


# -- parse_manifest: accepted forms ----------------------------------------------------------
def test_minimal_manifest_is_a_script_entrypoint() -> None:
    manifest = parse_manifest('entrypoint = "main.py"\n')
    assert manifest == Manifest(entrypoint="main.py")
    assert not manifest.is_function
    assert manifest.requirements == ()
    assert manifest.description == ""
    assert manifest.python is None


def test_full_manifest_and_its_json_round_trip() -> None:
    text = """
entrypoint = "pkg.jobs:main"
requirements = [" httpx==0.28.1 ", "rich>=13"]
description = "Nightly export"
python = "3.11"
"""
    manifest = parse_manifest(text, environments=("prod", "staging"))
    assert manifest.entrypoint == "pkg.jobs:main"
    assert manifest.is_function
    assert manifest.requirements == ("httpx==0.28.1", "rich>=13")  # stripped
    assert manifest.description == "Nightly export"
    assert manifest.python == "3.11"
    assert manifest.environments == ("prod", "staging")
    assert Manifest.from_json(manifest.to_json()) == manifest


@pytest.mark.parametrize(
    "entrypoint",
    ["main.py", "src/app/run.py", "my-job.py", "app:main", "pkg.sub.mod:run_it", "_m:_f"],
)
def test_entrypoint_forms_accepted(entrypoint: str) -> None:
    assert parse_manifest(f'entrypoint = "{entrypoint}"').entrypoint == entrypoint


@pytest.mark.parametrize("python", ["3.11", "3.9", "3.12.4"])
def test_python_versions_accepted(python: str) -> None:
    assert parse_manifest(f'entrypoint = "m.py"\npython = "{python}"').python == python


# -- parse_manifest: every refusal names the fix ----------------------------------------------
@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param('entrypoint = "main.py', ["not valid TOML"], id="bad-toml"),
        pytest.param(
            'entrypoint = "m.py"\nentry = "x"\nextra = 1',
            ["unknown keys entry, extra", "entrypoint", "requirements", "python"],
            id="unknown-keys",
        ),
        pytest.param("", ['entrypoint = "module:function" or "file.py"'], id="no-entrypoint"),
        pytest.param("entrypoint = 3", ['"file.py"', "(got 3)"], id="entrypoint-not-text"),
        pytest.param('entrypoint = "main"', ['"module:function"', "'main'"], id="no-suffix"),
        pytest.param('entrypoint = "main.txt"', ['"file.py"'], id="not-python"),
        pytest.param('entrypoint = "pkg:"', ['"module:function"'], id="no-function"),
        pytest.param(
            'entrypoint = "m.py"\nrequirements = "httpx"',
            ["requirements must be a list of strings", 'e.g. ["httpx==0.28.1"]'],
            id="requirements-string",
        ),
        pytest.param(
            'entrypoint = "m.py"\nrequirements = ["httpx", ""]',
            ["requirements must be a list of strings"],
            id="requirements-empty-item",
        ),
        pytest.param(
            'entrypoint = "m.py"\nrequirements = [1]',
            ["requirements must be a list of strings"],
            id="requirements-number",
        ),
        pytest.param(
            'entrypoint = "m.py"\ndescription = 5', ["description must be a string"], id="desc"
        ),
        pytest.param(
            'entrypoint = "m.py"\npython = 3.11',
            ['python must look like "3.11"', "(got 3.11)"],
            id="python-number",
        ),
        pytest.param(
            'entrypoint = "m.py"\npython = "python3"',
            ['python must look like "3.11"'],
            id="python-word",
        ),
        pytest.param(
            'entrypoint = "m.py"\npython = "2.7"', ['python must look like "3.11"'], id="python2"
        ),
    ],
)
def test_refusals_say_what_to_write(text: str, fragments: list[str]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_manifest(text)
    message = caught.value.message
    assert "runwright.toml" in message
    for fragment in fragments:
        assert fragment in message, message
    assert caught.value.status_code == 422


# -- environments --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "environment"),
    [
        ("config.production.json", "production"),
        ("config.eu-west_1.json", "eu-west_1"),
        ("config.json", None),
        ("config..json", None),
        ("config.a.b.json", None),
        ("config.prod.yaml", None),
        ("sub/config.prod.json", None),
        ("myconfig.prod.json", None),
    ],
)
def test_environment_of_config_file(name: str, environment: str | None) -> None:
    assert environment_of_config_file(name) == environment


def test_check_environment() -> None:
    assert check_environment("prod-2") == "prod-2"
    for bad in ("", "-x", "a b", "x" * 51, "../etc"):
        with pytest.raises(InvalidRequest, match="letters, digits"):
            check_environment(bad)


# -- merge_config ----------------------------------------------------------------------------
def test_merge_config_is_deep() -> None:
    base = {"db": {"host": "localhost", "port": 5432, "opts": {"ssl": False}}, "debug": True}
    overlay = {"db": {"host": "db1", "opts": {"timeout": 5}}, "debug": False, "new": [1]}
    assert merge_config(base, overlay) == {
        "db": {"host": "db1", "port": 5432, "opts": {"ssl": False, "timeout": 5}},
        "debug": False,
        "new": [1],
    }


def test_merge_config_replaces_anything_that_is_not_two_objects() -> None:
    assert merge_config({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}  # lists are not merged
    assert merge_config({"a": {"x": 1}}, {"a": "flat"}) == {"a": "flat"}
    assert merge_config({"a": "flat"}, {"a": {"x": 1}}) == {"a": {"x": 1}}
    assert merge_config({"a": 1}, {"a": None}) == {"a": None}


def test_merge_config_leaves_its_inputs_alone() -> None:
    base = {"db": {"host": "h", "nested": {"k": 1}}}
    overlay = {"db": {"nested": {"k": 2}}}
    before = (copy.deepcopy(base), copy.deepcopy(overlay))
    merge_config(base, overlay)
    assert (base, overlay) == before


json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
json_objects = st.recursive(
    st.dictionaries(st.text(max_size=3), json_leaf, max_size=4),
    lambda children: st.dictionaries(st.text(max_size=3), json_leaf | children, max_size=4),
    max_leaves=12,
)


@given(json_objects, json_objects)
def test_merge_config_properties(base: dict[str, Any], overlay: dict[str, Any]) -> None:
    merged = merge_config(base, overlay)
    assert set(merged) == set(base) | set(overlay)
    for key, value in overlay.items():
        if not (isinstance(value, dict) and isinstance(base.get(key), dict)):
            assert merged[key] == value
    assert merge_config(merged, overlay) == merged  # applying an overlay twice changes nothing
    assert merge_config(base, {}) == base
    assert merge_config({}, overlay) == overlay


# -- host_overrides ------------------------------------------------------------------------
def test_host_overrides_nest_by_double_underscore_and_lower_case() -> None:
    assert host_overrides({"RUNWRIGHT_JOB_CONFIG__DB__HOST": "x"}) == {"db": {"host": "x"}}
    assert host_overrides(
        {
            "RUNWRIGHT_JOB_CONFIG__DB__HOST": "db1",
            "RUNWRIGHT_JOB_CONFIG__DB__PORT": "5433",
            "RUNWRIGHT_JOB_CONFIG__FEATURE__FLAGS__NEW_UI": "true",
            "RUNWRIGHT_JOB_CONFIG__NAME": "plain text",
        }
    ) == {
        "db": {"host": "db1", "port": 5433},
        "feature": {"flags": {"new_ui": True}},
        "name": "plain text",
    }


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("5432", 5432),
        ("2.5", 2.5),
        ("true", True),
        ("false", False),
        ("null", None),
        ('{"a": [1, 2]}', {"a": [1, 2]}),
        ("[1, 2]", [1, 2]),
        ('"quoted"', "quoted"),
        ("01234", "01234"),  # not JSON: kept as text (a zip code keeps its zero)
        ("db.example.com", "db.example.com"),
        ("", ""),
    ],
)
def test_host_override_values_keep_their_json_type(raw: str, value: Any) -> None:
    assert host_overrides({"RUNWRIGHT_JOB_CONFIG__V": raw}) == {"v": value}


def test_host_overrides_ignore_other_variables_and_empty_paths() -> None:
    assert (
        host_overrides(
            {
                "RUNWRIGHT_DATABASE_URL": "postgresql://u:p@h/db",
                "RUNWRIGHT_JOB_CONFIG_DB": "one underscore",
                "RUNWRIGHT_JOB_CONFIG__": "no path",
                "PATH": "/bin",
            }
        )
        == {}
    )
    assert host_overrides({"RUNWRIGHT_JOB_CONFIG__A____B": "1"}) == {"a": {"b": 1}}


def test_host_overrides_merge_over_package_configuration() -> None:
    package = {"db": {"host": "localhost", "port": 5432}}
    overrides = host_overrides({"RUNWRIGHT_JOB_CONFIG__DB__HOST": "prod-db"})
    assert merge_config(package, overrides) == {"db": {"host": "prod-db", "port": 5432}}


def test_a_deeper_override_wins_over_a_flat_one_whatever_the_order() -> None:
    environ = {"RUNWRIGHT_JOB_CONFIG__A__B": "2", "RUNWRIGHT_JOB_CONFIG__A": "1"}
    assert host_overrides(environ) == {"a": {"b": 2}}
    assert host_overrides(dict(reversed(list(environ.items())))) == {"a": {"b": 2}}


# -- secret_values ---------------------------------------------------------------------------
def test_secret_values_by_key_name_at_any_depth() -> None:
    config = {
        "db": {"host": "db1", "password": "s3cr3t-value", "user": "app"},
        "API_KEY": "k-123456",
        "service": {"auth_token": "tok-abcdef", "private_key": "-----KEY-----"},
        "secrets": {"one": "first-secret", "list": ["second-secret", {"deep": "third-secret"}]},
        "passwd": 12345678,
        "note": "password is not a secret value here",
    }
    assert secret_values(config) == {
        "s3cr3t-value",
        "k-123456",
        "tok-abcdef",
        "-----KEY-----",
        "first-secret",
        "second-secret",
        "third-secret",
        "12345678",
    }


def test_short_secret_values_are_not_masked() -> None:
    # Masking "abc" would blank out every "abc" of the output: values under 4 characters stay.
    assert secret_values({"password": "abc", "token": "", "secret": 123}) == set()


def test_a_numeric_secret_is_masked_whatever_its_json_type() -> None:
    # host_overrides turns RUNWRIGHT_JOB_CONFIG__DB__PASSWORD=8765.4321 into a float: the
    # password is still a secret and is printed as 8765.4321.
    config = merge_config(
        {"db": {"host": "h"}}, host_overrides({"RUNWRIGHT_JOB_CONFIG__DB__PASSWORD": "8765.4321"})
    )
    assert config == {"db": {"host": "h", "password": 8765.4321}}
    assert secret_values(config) == {"8765.4321"}


# -- targets and a script's inline metadata ------------------------------------------------------
def test_targets_in_runwright_toml_get_their_defaults_and_survive_json() -> None:
    manifest = parse_manifest('entrypoint = "main.py"\ntargets = {tags = [" web ", "db"]}\n')
    assert manifest.targets == {"tags": ["web", "db"], "max_parallel": 10}
    assert Manifest.from_json(manifest.to_json()) == manifest


@pytest.mark.parametrize(
    ("targets", "fragment"),
    [
        ('["web"]', "targets must be a table"),
        ("{tags = []}", "tags:"),
        ('{tags = ["web"], max_parallel = 0}', "max_parallel:"),
        ('{tags = ["web"], max_parallel = 1001}', "max_parallel:"),
        ('{tags = ["web"], parallel = 3}', "parallel: Extra inputs are not permitted"),
    ],
)
def test_bad_targets_are_refused_with_the_field_to_fix(targets: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_manifest(f'entrypoint = "main.py"\ntargets = {targets}\n')
    assert refused.value.message.startswith("runwright.toml: targets")
    assert fragment in refused.value.message


def test_a_steps_package_puts_targets_on_its_steps() -> None:
    with pytest.raises(InvalidRequest, match="put `targets:` on the steps"):
        parse_manifest('targets = {tags = ["web"]}\n', steps={"steps": []})


SCRIPT_HEAD = """\
#!/usr/bin/env python
# /// script
# dependencies = ["httpx==0.28.1", "rich>=13"]
# requires-python = ">=3.11"
#
# [tool.runwright]
# targets = {tags = ["switch", "core:2"], max_parallel = 50}
# ///
print("hi")
"""


def test_a_scripts_inline_block_becomes_its_manifest() -> None:
    assert inline_metadata(SCRIPT_HEAD)["requires-python"] == ">=3.11"
    text = script_manifest("backup.py", SCRIPT_HEAD)
    manifest = parse_manifest(text)
    assert manifest.entrypoint == "backup.py"
    assert manifest.requirements == ("httpx==0.28.1", "rich>=13")
    assert manifest.targets == {"tags": ["switch", "core:2"], "max_parallel": 50}


def test_a_script_without_a_block_keeps_its_one_line_manifest() -> None:
    # The same text as before inline metadata existed: the same code is the same version.
    assert script_manifest("job.py", "print(1)\n") == 'entrypoint = "job.py"\n'
    assert inline_metadata("# /// other\n# x = 1\n# ///\n") == {}


@pytest.mark.parametrize(
    ("block", "fragment"),
    [
        ("# dependencies = 3", "dependencies must be a list of strings"),
        ("# x = [", "is not valid TOML"),
        ("# [tool.runwright]\n# retries = 3", "unknown keys retries"),
        ("# [tool.runwright]\n# targets = {tags = []}", "The script's [tool.runwright]: targets"),
    ],
)
def test_a_bad_inline_block_is_refused_with_what_to_fix(block: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        script_manifest("job.py", f"# /// script\n{block}\n# ///\nprint(1)\n")
    assert fragment in refused.value.message


def test_two_script_blocks_are_refused() -> None:
    block = "# /// script\n# dependencies = []\n# ///\n"
    with pytest.raises(InvalidRequest, match="more than one"):
        inline_metadata(block + "import os\n" + block)
