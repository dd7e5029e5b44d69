"""The job context of a multi-step run: its helpers, its JSON round trip, what a
malformed saved context gives, and how secrets are masked before it is saved or shown."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runwright.artifacts.local import LocalStore
from runwright.errors import InvalidRequest, NotFound
from runwright.model.context import (
    CONTEXT_FORMAT,
    MASK,
    FileMetadata,
    JobContext,
    StepState,
    StepStatus,
    WebhookData,
    mask_values,
)
from runwright.services.contexts import ContextStore, masked_json


def context(**values: Any) -> JobContext:
    return JobContext.new(7, 3, job="nightly", **values)


def finished(ctx: JobContext, step_id: str, status: str, output: Any = None) -> StepState:
    state = ctx.step(step_id)
    state.status = status
    state.output = output
    return state


def csv_file(path: str, size: int = 10, **extra: Any) -> FileMetadata:
    return FileMetadata(
        path=path, filename=path.rsplit("/", 1)[-1], size=size, mime_type="text/csv", **extra
    )


# -- steps ---------------------------------------------------------------------------------------
def test_step_output_is_none_until_set_and_then_what_was_set() -> None:
    ctx = context()
    assert ctx.get_step_output("fetch") is None
    assert "fetch" not in ctx.steps  # reading does not create the step
    ctx.set_step_output("fetch", {"user": {"id": 42}})
    assert ctx.get_step_output("fetch") == {"user": {"id": 42}}
    assert ctx.steps["fetch"].status == StepStatus.PENDING  # setting output is not success
    ctx.set_step_output("fetch", [1, 2])
    assert ctx.get_step_output("fetch") == [1, 2]
    assert list(ctx.steps) == ["fetch"]


def test_set_step_output_touches_the_context() -> None:
    ctx = context()
    ctx.updated_at = 0.0
    ctx.set_step_output("a", 1)
    assert ctx.updated_at > time.time() - 60


def test_step_creates_a_pending_state_once() -> None:
    ctx = context()
    first = ctx.step("a")
    assert (first.step_id, first.status, first.output, first.attempt) == ("a", "pending", None, 0)
    first.status = StepStatus.RUNNING
    assert ctx.step("a") is first


@pytest.mark.parametrize(
    ("status", "has_output"),
    [
        (StepStatus.SUCCEEDED, True),
        (StepStatus.FAILED, False),
        (StepStatus.SKIPPED, False),
        (StepStatus.TIMED_OUT, False),
        (StepStatus.CANCELED, False),
        (StepStatus.RUNNING, False),
        (StepStatus.PENDING, False),
    ],
)
def test_has_step_output_only_for_a_succeeded_step(status: str, has_output: bool) -> None:
    ctx = context()
    finished(ctx, "a", status, output={"x": 1})
    assert ctx.has_step_output("a") is has_output
    assert ctx.has_step_output("unknown") is False


def test_has_step_output_is_true_for_a_succeeded_step_that_returned_none() -> None:
    ctx = context()
    finished(ctx, "a", StepStatus.SUCCEEDED, output=None)
    assert ctx.has_step_output("a") is True


def test_completed_count_and_executed_ids_count_final_statuses_in_order() -> None:
    ctx = context()
    assert ctx.completed_steps_count() == 0
    assert ctx.get_executed_step_ids() == []
    finished(ctx, "fetch", StepStatus.SUCCEEDED, 1)
    finished(ctx, "maybe", StepStatus.SKIPPED)
    finished(ctx, "running", StepStatus.RUNNING)
    finished(ctx, "broken", StepStatus.FAILED)
    finished(ctx, "slow", StepStatus.TIMED_OUT)
    finished(ctx, "later", StepStatus.PENDING)
    finished(ctx, "stopped", StepStatus.CANCELED)
    assert ctx.completed_steps_count() == 5
    assert ctx.get_executed_step_ids() == ["fetch", "maybe", "broken", "slow", "stopped"]


def test_status_sets_are_consistent() -> None:
    assert set(StepStatus.FINAL) <= set(StepStatus.ALL)
    assert set(StepStatus.DONE) <= set(StepStatus.FINAL)
    assert StepStatus.RUNNING not in StepStatus.FINAL
    assert StepStatus.PENDING not in StepStatus.FINAL
    assert StepStatus.FAILED not in StepStatus.DONE


# -- variables and webhook -----------------------------------------------------------------------
def test_variables_get_and_set() -> None:
    ctx = context(variables={"region": "eu"})
    assert ctx.get_variable("region") == "eu"
    assert ctx.get_variable("missing") is None
    ctx.updated_at = 0.0
    ctx.set_variable("limits", {"rows": 10})
    ctx.set_variable("region", "us")
    assert ctx.get_variable("limits") == {"rows": 10}
    assert ctx.get_variable("region") == "us"
    assert ctx.updated_at > 0


def test_webhook_data_defaults_and_replacement() -> None:
    ctx = context()
    empty = ctx.get_webhook_data()
    assert (empty.payload, empty.query_params, empty.headers) == (None, {}, {})
    webhook = WebhookData(payload={"order": 5}, query_params={"a": "1"}, headers={"X-Id": "r1"})
    ctx.updated_at = 0.0
    ctx.set_webhook_data(webhook)
    assert ctx.get_webhook_data() is webhook
    assert ctx.updated_at > 0
    assert ctx.references()["webhook"] == {
        "payload": {"order": 5},
        "query_params": {"a": "1"},
        "headers": {"X-Id": "r1"},
    }


def test_webhook_from_json_tolerates_none_and_stringifies_headers() -> None:
    assert WebhookData.from_json(None) == WebhookData()
    parsed = WebhookData.from_json({"headers": {"X-Count": 3}, "query_params": None})
    assert parsed.headers == {"X-Count": "3"}
    assert parsed.query_params == {}


# -- files ---------------------------------------------------------------------------------------
def test_add_file_metadata_appends_and_the_same_path_replaces() -> None:
    ctx = context()
    assert ctx.get_files() == []
    first = csv_file("jobs/3/executions/7/output/a.csv", size=10)
    other = csv_file("jobs/3/executions/7/output/b.csv", size=20)
    again = csv_file("jobs/3/executions/7/output/a.csv", size=99, row_count=4, step_id="w")
    ctx.add_file_metadata(first)
    ctx.add_file_metadata(other)
    ctx.add_file_metadata(again)
    files = ctx.get_files()
    assert [(f.path, f.size) for f in files] == [
        ("jobs/3/executions/7/output/b.csv", 20),
        ("jobs/3/executions/7/output/a.csv", 99),
    ]
    assert files[1].row_count == 4
    assert files[1].step_id == "w"


def test_get_files_is_a_copy() -> None:
    ctx = context()
    ctx.add_file_metadata(csv_file("a.csv"))
    ctx.get_files().clear()
    assert len(ctx.get_files()) == 1


def test_file_metadata_round_trip_and_defaults() -> None:
    meta = csv_file("out/a.csv", size=5, row_count=2, step_id="write")
    assert FileMetadata.from_json(meta.to_json()) == meta
    bare = FileMetadata.from_json({"path": "p", "filename": "f", "size": "12"})
    assert (bare.size, bare.mime_type, bare.row_count, bare.created_at) == (
        12,
        "application/octet-stream",
        None,
        0.0,
    )


# -- the view references read --------------------------------------------------------------------
def test_references_are_deep_copies() -> None:
    ctx = context(params={"day": "2026-11-22", "ids": [1]}, variables={"cfg": {"a": 1}})
    finished(ctx, "fetch", StepStatus.SUCCEEDED, {"rows": [1, 2]})
    ctx.set_webhook_data(WebhookData(payload={"p": [1]}))
    view = ctx.references()
    view["params"]["ids"].append(2)
    view["variables"]["cfg"]["a"] = 2
    view["steps"]["fetch"]["output"]["rows"].append(3)
    view["webhook"]["payload"]["p"].append(2)
    assert ctx.params == {"day": "2026-11-22", "ids": [1]}
    assert ctx.variables == {"cfg": {"a": 1}}
    assert ctx.get_step_output("fetch") == {"rows": [1, 2]}
    assert ctx.webhook.payload == {"p": [1]}


def test_references_hold_every_root() -> None:
    ctx = context(params={"a": 1})
    ctx.add_file_metadata(csv_file("x.csv"))
    finished(ctx, "s", StepStatus.FAILED).error = "boom"
    ctx.steps["s"].error_type = "exit_code"
    view = ctx.references()
    assert set(view) == {
        "run_id",
        "job_id",
        "job",
        "params",
        "variables",
        "steps",
        "webhook",
        "files",
    }
    assert (view["run_id"], view["job_id"], view["job"]) == (7, 3, "nightly")
    assert view["steps"]["s"] == {
        "status": "failed",
        "output": None,
        "error": "boom",
        "error_type": "exit_code",
    }
    assert view["files"][0]["path"] == "x.csv"


# -- JSON round trip -----------------------------------------------------------------------------
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
step_ids = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,10}", fullmatch=True)
step_states = st.builds(
    StepState,
    step_id=st.just("placeholder"),
    status=st.sampled_from(StepStatus.ALL),
    output=json_values,
    error=st.none() | st.text(max_size=30),
    error_type=st.none() | st.sampled_from(["reference", "input", "timeout", "exit_code"]),
    started_at=st.none() | st.floats(min_value=0, max_value=2e9),
    completed_at=st.none() | st.floats(min_value=0, max_value=2e9),
    attempt=st.integers(min_value=0, max_value=50),
)
files = st.builds(
    FileMetadata,
    path=st.text(min_size=1, max_size=20),
    filename=st.text(min_size=1, max_size=10),
    size=st.integers(min_value=0, max_value=2**40),
    mime_type=st.sampled_from(["text/csv", "application/json"]),
    row_count=st.none() | st.integers(min_value=0, max_value=10**6),
    created_at=st.floats(min_value=0, max_value=2e9),
    step_id=st.none() | step_ids,
)


@st.composite
def contexts(draw: st.DrawFn) -> JobContext:
    states = draw(st.dictionaries(step_ids, step_states, max_size=5))
    for step_id, state in states.items():
        state.step_id = step_id
    unique_files = {f.path: f for f in draw(st.lists(files, max_size=3))}
    return JobContext(
        execution_id=draw(st.integers(min_value=1, max_value=2**31)),
        job_id=draw(st.integers(min_value=1, max_value=2**31)),
        job=draw(st.text(max_size=20)),
        params=draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
        variables=draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
        steps=states,
        webhook=WebhookData(
            payload=draw(json_values),
            query_params=draw(st.dictionaries(st.text(max_size=5), json_values, max_size=3)),
            headers=draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
        ),
        files=list(unique_files.values()),
        created_at=draw(st.floats(min_value=0, max_value=2e9)),
        updated_at=draw(st.floats(min_value=0, max_value=2e9)),
    )


@settings(max_examples=150, deadline=None)
@given(contexts())
def test_to_json_from_json_round_trip_through_json_text(ctx: JobContext) -> None:
    text = json.dumps(ctx.to_json())
    again = JobContext.from_json(json.loads(text))
    assert again == ctx
    assert again.to_json() == ctx.to_json()
    assert list(again.steps) == list(ctx.steps)  # the order steps were recorded in


def test_to_json_carries_the_format_and_every_field() -> None:
    ctx = context(params={"a": 1})
    data = ctx.to_json()
    assert data["format"] == CONTEXT_FORMAT
    assert set(data) == {
        "format",
        "execution_id",
        "job_id",
        "job",
        "params",
        "variables",
        "steps",
        "webhook",
        "files",
        "created_at",
        "updated_at",
    }


def test_from_json_fills_defaults_for_missing_optional_fields() -> None:
    ctx = JobContext.from_json({"execution_id": "7", "job_id": 3})
    assert (ctx.execution_id, ctx.job_id, ctx.job) == (7, 3, "")
    assert (ctx.params, ctx.variables, ctx.steps, ctx.files) == ({}, {}, {}, [])
    assert ctx.webhook == WebhookData()
    state = JobContext.from_json(
        {"execution_id": 1, "job_id": 1, "steps": {"a": {"step_id": "a"}}}
    ).steps["a"]
    assert (state.status, state.attempt) == (StepStatus.PENDING, 0)


# -- malformed saved contexts --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "words"),
    [
        (None, "not a JSON object"),
        ([], "not a JSON object"),
        ("context", "not a JSON object"),
        ({}, "execution_id"),
        ({"execution_id": 1}, "job_id"),
        ({"execution_id": "seven", "job_id": 1}, "seven"),
        ({"execution_id": None, "job_id": 1}, "malformed"),
        ({"execution_id": 1, "job_id": 2, "format": 2}, "format 2"),
        ({"execution_id": 1, "job_id": 2, "format": "x"}, "format 'x'"),
        (
            {"execution_id": 1, "job_id": 2, "steps": {"a": {"step_id": "a", "status": "weird"}}},
            "unknown step status 'weird'",
        ),
        ({"execution_id": 1, "job_id": 2, "steps": {"a": {"status": "succeeded"}}}, "step_id"),
        (
            {"execution_id": 1, "job_id": 2, "steps": {"a": {"step_id": "a", "attempt": "x"}}},
            "malformed",
        ),
        ({"execution_id": 1, "job_id": 2, "files": [{"path": "p"}]}, "filename"),
        ({"execution_id": 1, "job_id": 2, "files": [1]}, "malformed"),
        ({"execution_id": 1, "job_id": 2, "files": "abc"}, "malformed"),
        (
            {
                "execution_id": 1,
                "job_id": 2,
                "files": [{"path": "p", "filename": "f", "size": "x"}],
            },
            "malformed",
        ),
        ({"execution_id": 1, "job_id": 2, "params": 5}, "malformed"),
        ({"execution_id": 1, "job_id": 2, "variables": 3}, "malformed"),
        ({"execution_id": 1, "job_id": 2, "created_at": "yesterday"}, "malformed"),
    ],
)
def test_a_malformed_context_is_an_invalid_request_saying_why(data: Any, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        JobContext.from_json(data)
    assert words in caught.value.message
    assert caught.value.message.startswith("the saved context")


# Regression (found by this test, fixed in e3f1904): a step state, webhook or headers of
# the wrong JSON type raised AttributeError instead of InvalidRequest (the engine then
# failed the run with a raw traceback and GET /api/runs/{id}/context answered 500).
@pytest.mark.parametrize(
    "data",
    [
        {"execution_id": 1, "job_id": 2, "steps": {"a": "succeeded"}},
        {"execution_id": 1, "job_id": 2, "steps": {"a": None}},
        {"execution_id": 1, "job_id": 2, "steps": ["a"]},
        {"execution_id": 1, "job_id": 2, "webhook": "payload"},
        {"execution_id": 1, "job_id": 2, "webhook": {"headers": ["X-Id"]}},
    ],
)
def test_a_context_with_wrongly_typed_parts_is_an_invalid_request(data: Any) -> None:
    with pytest.raises(InvalidRequest, match="the saved context is malformed"):
        JobContext.from_json(data)


def test_the_context_store_names_the_run_for_missing_unreadable_and_bad_json(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "store")
    contexts = ContextStore(store)
    with pytest.raises(NotFound, match=r"no saved context for run 7 of job nightly"):
        contexts.load(3, 7, job="nightly")
    store.put("jobs/3/executions/7/context.json", b"{not json")
    with pytest.raises(InvalidRequest, match=r"run 7 of job nightly is not valid JSON"):
        contexts.load(3, 7, job="nightly")
    store.put("jobs/3/executions/7/context.json", b'{"format": 9, "execution_id": 7}')
    with pytest.raises(InvalidRequest, match=r"run 7 of job nightly is unreadable: .*format 9"):
        contexts.load(3, 7, job="nightly")


def test_the_context_store_saves_masked_and_loads_it_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    contexts = ContextStore(store)
    ctx = context(variables={"token": "s3cr3t-token", "region": "eu"})
    finished(ctx, "login", StepStatus.SUCCEEDED, {"header": "Bearer s3cr3t-token"})
    size = contexts.save(ctx, sensitive_names=frozenset({"token"}), secrets={"s3cr3t-token"})
    raw = store.get("jobs/3/executions/7/context.json")
    assert size == len(raw)
    assert b"s3cr3t-token" not in raw
    loaded = contexts.load(3, 7)
    assert loaded.variables == {"token": MASK, "region": "eu"}
    assert loaded.get_step_output("login") == {"header": f"Bearer {MASK}"}
    assert loaded.steps["login"].status == StepStatus.SUCCEEDED


# -- masking -------------------------------------------------------------------------------------
def test_mask_values_replaces_every_occurrence_inside_strings_at_any_depth() -> None:
    value = {
        "a": "user hunter2 pass hunter2",
        "list": ["hunter2", 1, None, True, {"deep": ["x-hunter2-y"]}],
        "hunter2": "key names are not masked",
        "n": 3.5,
    }
    assert mask_values(value, {"hunter2"}) == {
        "a": f"user {MASK} pass {MASK}",
        "list": [MASK, 1, None, True, {"deep": [f"x-{MASK}-y"]}],
        "hunter2": "key names are not masked",
        "n": 3.5,
    }
    assert value["a"] == "user hunter2 pass hunter2"  # the input is not changed


def test_mask_values_masks_the_longest_secret_first() -> None:
    # "abc" inside "abcdef": masking the short one first would leave "def" visible.
    assert mask_values("x abcdef y", {"abc", "abcdef"}) == f"x {MASK} y"


def test_mask_values_without_secrets_returns_the_value() -> None:
    value = {"a": ["b"]}
    assert mask_values(value, set()) is value
    assert mask_values("plain", {"other"}) == "plain"


def test_masked_json_masks_sensitive_variables_by_name_and_secrets_in_outputs() -> None:
    ctx = context(
        params={"note": "pw is pa55word!"},
        variables={"password": "pa55word!", "user": "ada", "short": "ab"},
    )
    finished(ctx, "login", StepStatus.SUCCEEDED, {"sent": ["ada", "pa55word!"]})
    finished(ctx, "broken", StepStatus.FAILED).error = "denied for pa55word!"
    ctx.set_webhook_data(WebhookData(headers={"Authorization": "Basic pa55word!"}))
    data = masked_json(ctx, frozenset({"password", "short"}), {"pa55word!"})
    assert data["variables"] == {"password": MASK, "user": "ada", "short": MASK}
    assert data["steps"]["login"]["output"] == {"sent": ["ada", MASK]}
    assert data["steps"]["broken"]["error"] == f"denied for {MASK}"
    assert data["params"] == {"note": f"pw is {MASK}"}
    assert data["webhook"]["headers"] == {"Authorization": f"Basic {MASK}"}
    assert "pa55word!" not in json.dumps(data)
    # The context itself keeps the real values (steps still need them).
    assert ctx.variables["password"] == "pa55word!"
    assert ctx.get_step_output("login") == {"sent": ["ada", "pa55word!"]}
