"""The pure targets model: tags and names, selection by tag, credential resolution
(tag match, priority then name), the run's verdict from its targets, and masking."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from runwright.model.states import Outcome, RunStatus
from runwright.model.targets import (
    MASK,
    Credential,
    Resolution,
    SecretPart,
    Target,
    TargetSelector,
    TargetStatus,
    UnlockedCredential,
    check_name,
    check_tags,
    judge,
    override,
    resolve,
    select,
    split_tags,
    summarize_output,
)


def target(name: str, *tags: str, enabled: bool = True, id: int = 0) -> Target:
    return Target(id=id, name=name, address=f"{name}.example", tags=tags, enabled=enabled)


def credential(name: str, *tags: str, priority: int = 100, id: int = 0) -> Credential:
    return Credential(
        id=id, name=name, username="ops", kind="password", priority=priority, tags=tags
    )


# -- tags and names ------------------------------------------------------------------------------
def test_check_tags_strips_drops_empty_and_duplicates_keeping_order() -> None:
    assert check_tags([" web", "db", "", "web", "  ", "prod:eu-1"]) == ("web", "db", "prod:eu-1")
    assert split_tags("web, db,,web") == ("web", "db")
    assert check_tags([]) == ()


@pytest.mark.parametrize("bad", ["has space", "-leading", "ü", "a" * 101, "semi;colon"])
def test_check_tags_refuses_with_the_rule(bad: str) -> None:
    with pytest.raises(ValueError, match=r"use 1 to 100 letters, digits, '\.', '_', ':' or '-'"):
        check_tags([bad])


def test_check_name_accepts_hostnames_and_refuses_the_rest() -> None:
    for good in ("web-1", "db.prod.example", "root@host", "switch:7", "A" * 200):
        assert check_name(good, "Target") == good
    for bad in ("", "web 1", "-web", "a/b", "A" * 201):
        with pytest.raises(ValueError, match=r"Target name .* is not valid: use 1 to 200"):
            check_name(bad, "Target")


# -- select --------------------------------------------------------------------------------------
def test_select_takes_enabled_targets_with_any_tag_by_name() -> None:
    inventory = [
        target("web-2", "web"),
        target("db-1", "db"),
        target("web-1", "web", "prod"),
        target("old", "web", enabled=False),
        target("edge", "prod"),
        target("bare"),
    ]
    assert [t.name for t in select(inventory, ["web"])] == ["web-1", "web-2"]
    assert [t.name for t in select(inventory, ["prod", "db"])] == ["db-1", "edge", "web-1"]
    assert select(inventory, ["nothing"]) == []
    assert select(inventory, []) == []
    assert select([], ["web"]) == []


# -- resolve -------------------------------------------------------------------------------------
def test_resolve_orders_candidates_by_priority_then_name() -> None:
    creds = [
        credential("zeta", "web", priority=10),
        credential("beta", "web", priority=50),
        credential("alpha", "web", priority=50),
        credential("first", "web", priority=-5),
        credential("db-only", "db", priority=1),
    ]
    resolution = resolve([target("web-1", "web")], creds)
    (only,) = resolution.resolved
    assert only.target.name == "web-1"
    assert [c.name for c in only.credentials] == ["first", "zeta", "alpha", "beta"]
    assert resolution.unresolved == ()


def test_resolve_matches_on_any_shared_tag_and_lists_targets_without_credentials() -> None:
    targets = [
        target("web-1", "web", "eu"),
        target("db-1", "db"),
        target("lonely", "nobody"),
        target("untagged"),
    ]
    creds = [
        credential("eu-admin", "eu", priority=1),
        credential("web-ops", "web", priority=2),
        credential("db-ops", "db", "web", priority=3),
    ]
    resolution = resolve(targets, creds)
    found = {c.target.name: [x.name for x in c.credentials] for c in resolution.resolved}
    assert found == {"web-1": ["eu-admin", "web-ops", "db-ops"], "db-1": ["db-ops"]}
    assert [t.name for t in resolution.unresolved] == ["lonely", "untagged"]
    assert resolution.matched == 4
    assert resolution.summary() == "Resolved credentials for 2/4 targets (50%)"


def test_resolve_keeps_the_targets_order_and_handles_nothing() -> None:
    targets = [target("b", "x"), target("a", "x")]
    resolution = resolve(targets, [credential("c", "x")])
    assert [c.target.name for c in resolution.resolved] == ["b", "a"]
    none = resolve([], [credential("c", "x")])
    assert (none.resolved, none.unresolved, none.matched) == ((), (), 0)
    assert none.summary() == "Resolved credentials for 0/0 targets (0%)"
    no_credentials = resolve(targets, [])
    assert [t.name for t in no_credentials.unresolved] == ["b", "a"]
    assert no_credentials.summary() == "Resolved credentials for 0/2 targets (0%)"


# -- judge ---------------------------------------------------------------------------------------
def resolution(resolved: int, unresolved: int = 0) -> Resolution:
    targets = [target(f"t{i}", "x") for i in range(resolved)]
    lonely = [target(f"u{i}", "y") for i in range(unresolved)]
    return resolve([*targets, *lonely], [credential("c", "x")])


OK, FAILED = TargetStatus.SUCCEEDED.value, TargetStatus.FAILED.value
VERDICTS = [
    (0, 0, [], RunStatus.SUCCEEDED, Outcome.COMPLETED_NO_TARGETS, "No enabled target has any"),
    (0, 3, [], RunStatus.FAILED, Outcome.COMPLETED_NO_CREDENTIALS, "3 target(s) matched but no"),
    (3, 0, [OK, OK, OK], RunStatus.SUCCEEDED, Outcome.COMPLETED_SUCCESS, "All 3 target(s) succ"),
    (3, 0, [OK, FAILED, OK], RunStatus.FAILED, Outcome.COMPLETED_PARTIAL_FAILURE, "1 of 3 targ"),
    (2, 0, [FAILED, FAILED], RunStatus.FAILED, Outcome.COMPLETED_FAILURE, "All 2 target(s) fail"),
    # A target without credentials counts as not succeeded.
    (2, 1, [OK, OK], RunStatus.FAILED, Outcome.COMPLETED_PARTIAL_FAILURE, "1 of 3 target(s) f"),
    (1, 2, [FAILED], RunStatus.FAILED, Outcome.COMPLETED_FAILURE, "All 3 target(s) failed."),
    # Canceled or never finished: not a success either.
    (2, 0, [OK, "canceled"], RunStatus.FAILED, Outcome.COMPLETED_PARTIAL_FAILURE, "1 of 2"),
    (1, 0, ["pending"], RunStatus.FAILED, Outcome.COMPLETED_FAILURE, "All 1 target(s) failed."),
]


@pytest.mark.parametrize(
    ("resolved", "unresolved", "statuses", "status", "outcome", "text"), VERDICTS
)
def test_judge_gives_every_outcome(
    resolved: int,
    unresolved: int,
    statuses: list[str],
    status: RunStatus,
    outcome: Outcome,
    text: str,
) -> None:
    verdict = judge(resolution(resolved, unresolved), statuses)
    assert (verdict.status, verdict.outcome) == (status, outcome)
    assert verdict.message.startswith(text), verdict.message


def test_judge_no_credentials_says_how_to_add_one() -> None:
    verdict = judge(resolution(0, 2), [])
    assert "runwright credential add --tags" in verdict.message


# -- secrets are masked --------------------------------------------------------------------------
def test_secret_part_and_unlocked_credential_never_show_the_secret() -> None:
    secret = SecretPart(password="canary-pw", private_key="canary-key", passphrase="canary-pp")
    info = credential("ops", "web")
    unlocked = UnlockedCredential(info, secret)
    for shown in (repr(secret), str(secret), repr(unlocked), str(unlocked), f"{[unlocked]}"):
        assert "canary" not in shown, shown
    assert repr(secret) == f"SecretPart({MASK})"
    assert repr(unlocked) == "UnlockedCredential(name='ops', username='ops')"
    assert secret.values() == ["canary-pw", "canary-key", "canary-pp"]
    assert SecretPart(password="p").values() == ["p"]


def test_success_rate() -> None:
    assert credential("c").success_rate is None
    used = Credential(id=1, name="c", username="u", kind="key", successes=3, failures=1)
    assert used.success_rate == 0.75


def test_target_public_is_what_a_job_sees() -> None:
    t = Target(id=4, name="web-1", address="10.0.0.5", port=2222, tags=("web",), vars={"r": 1})
    assert t.public() == {
        "id": 4,
        "name": "web-1",
        "address": "10.0.0.5",
        "port": 2222,
        "driver": "ssh",
        "tags": ["web"],
        "vars": {"r": 1},
    }


# -- selectors -----------------------------------------------------------------------------------
def test_target_selector_checks_tags_and_bounds() -> None:
    assert TargetSelector(tags=[" web", "web", "db"]).tags == ["web", "db"]
    assert TargetSelector(tags=["web"]).max_parallel == 10
    with pytest.raises(ValidationError, match="at least 1 item"):
        TargetSelector(tags=[])
    with pytest.raises(ValidationError, match="give at least one tag"):
        TargetSelector(tags=["  "])
    with pytest.raises(ValidationError, match="is not valid"):
        TargetSelector(tags=["bad tag"])
    with pytest.raises(ValidationError, match="less than or equal to 1000"):
        TargetSelector(tags=["web"], max_parallel=1001)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        TargetSelector.model_validate({"tags": ["web"], "parallel": 3})


def test_override_takes_the_fields_a_run_gives() -> None:
    base = TargetSelector(tags=["web"], max_parallel=5)
    assert override(base, None) is base
    assert override(None, None) is None
    assert override(base, {"tags": ["db"], "max_parallel": None}) == TargetSelector(
        tags=["db"], max_parallel=5
    )
    assert override(None, {"tags": ["db"]}) == TargetSelector(tags=["db"], max_parallel=10)


def test_summarize_output_keeps_the_end() -> None:
    text = "".join(f"line {i}\n" for i in range(100))
    assert summarize_output(text, lines=3) == "line 97\nline 98\nline 99"
    assert summarize_output(text, lines=3, chars=10) == "98\nline 99"
    assert summarize_output("") == ""
