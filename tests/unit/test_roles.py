"""Who may do what: the route table looked up by template and by URL, and the grants."""

from __future__ import annotations

import re

import pytest

from control.auth.roles import (
    ACTION_ROUTE,
    CAMPAIGN,
    GRANTS,
    ROUTES,
    Can,
    Principal,
    Role,
    Who,
    match,
    offered,
    required,
    scope,
)

PARAMS = {"campaign_id": "42", "token_id": "7", "phone": "+33612345678", "webhook_id": "3"}


def concrete(path: str) -> str:
    """A URL of a route template, with its parameters filled in."""
    return re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], path)


def params_of(path: str) -> dict[str, str]:
    return {name: PARAMS[name] for name in re.findall(r"\{(\w+)\}", path)}


ROUTE_ITEMS = sorted(ROUTES.items())
IDS = [f"{m} {p}" for (m, p), _ in ROUTE_ITEMS]
GETS = [(p, c) for (m, p), c in ROUTE_ITEMS if m == "GET"]


@pytest.mark.parametrize(("route", "cap"), ROUTE_ITEMS, ids=IDS)
def test_every_listed_route_needs_its_capability_by_template(route: tuple[str, str], cap: Can):
    assert required(*route) is cap


@pytest.mark.parametrize(("route", "cap"), ROUTE_ITEMS, ids=IDS)
def test_every_listed_route_needs_its_capability_by_url_with_its_parameters(
    route: tuple[str, str], cap: Can
):
    method, path = route
    assert match(method, concrete(path)) == (cap, params_of(path))


@pytest.mark.parametrize(("path", "cap"), GETS, ids=[p for p, _ in GETS])
def test_head_is_looked_up_as_get(path: str, cap: Can):
    assert required("HEAD", path) is cap
    assert match("HEAD", concrete(path))[0] is cap


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/secrets"),
        ("GET", "/api/v1/campaigns/42/unknown"),
        ("GET", "/api/v1/campaigns/"),  # a trailing slash is another path
        ("GET", "/healthz/"),
        ("GET", "/api/v1/campaigns/42/transitions/1"),
        ("DELETE", "/api/v1/campaigns/42"),  # a known path with a method it does not have
        ("PUT", "/api/v1/campaigns"),
        ("POST", "/healthz"),
        ("OPTIONS", "/api/v1/campaigns"),
        ("HEAD", "/logout"),  # HEAD is GET, and /logout is POST only
    ],
)
def test_anything_unlisted_needs_admin(method: str, path: str):
    assert required(method, path) is Can.ADMIN
    assert match(method, path) == (Can.ADMIN, {})


def test_the_path_is_matched_whole_not_as_a_prefix():
    assert match("GET", "/api/v1/campaigns/42/transitionsX") == (Can.ADMIN, {})
    assert match("GET", "/x/api/v1/campaigns") == (Can.ADMIN, {})
    assert match("POST", "/api/v1/campaigns/42/pause/") == (Can.ADMIN, {})


@pytest.mark.parametrize(
    ("action", "cap"),
    [("start", Can.ADMIN), ("pause", Can.PAUSE), ("resume", Can.RESUME), ("cancel", Can.ADMIN)],
)
def test_the_action_route_has_one_right_per_action(action: str, cap: Can):
    assert required("POST", ACTION_ROUTE, action) is cap
    assert match("POST", f"/api/v1/campaigns/42/{action}") == (cap, {"campaign_id": "42"})


@pytest.mark.parametrize("action", ["complete", "lift_cap", "delete", None])
def test_an_action_not_offered_through_the_api_needs_admin(action: str | None):
    assert required("POST", ACTION_ROUTE, action) is Can.ADMIN
    if action is not None:
        assert match("POST", f"/api/v1/campaigns/42/{action}") == (Can.ADMIN, {})


def test_the_action_route_is_one_campaign_route_with_an_action_parameter():
    assert f"{CAMPAIGN}/{{action}}" == ACTION_ROUTE
    assert ("POST", ACTION_ROUTE) not in ROUTES  # listed once per action instead


# -- grants ---------------------------------------------------------------------------------
MATRIX = {
    Role.VIEWER: {Can.READ},
    Role.OPERATOR: {Can.READ, Can.PAUSE},
    Role.SUPERVISOR: {Can.READ, Can.PAUSE, Can.RESUME},
    Role.MONITOR: {Can.READ, Can.PAUSE, Can.REPORT},
    Role.ADMIN: {Can.READ, Can.PAUSE, Can.RESUME, Can.REPORT, Can.ADMIN},
}


@pytest.mark.parametrize("role", list(Role))
def test_each_role_can_what_the_documented_matrix_says(role: Role):
    p = Principal("t", "acme", role)
    assert {cap for cap in Can if p.can(cap)} == MATRIX[role] | {Can.PUBLIC}
    assert set(GRANTS[role]) == MATRIX[role]


def test_only_a_platform_token_can_stop_every_organisation():
    assert not Principal("a", "acme", Role.ADMIN).can(Can.PLATFORM)
    assert Principal("root", "default", Role.ADMIN, platform=True).can(Can.PLATFORM)


def test_no_role_is_granted_platform_or_public_by_the_table():
    for caps in GRANTS.values():
        assert Can.PLATFORM not in caps and Can.PUBLIC not in caps


def who(role: Role, platform: bool = False) -> Who:
    return Who(Principal("t", "acme", role, platform=platform), "10.0.0.1", "req-1")


@pytest.mark.parametrize(
    ("role", "running", "paused"),
    [
        (Role.VIEWER, [], []),
        (Role.OPERATOR, ["pause"], []),
        (Role.SUPERVISOR, ["pause"], ["resume"]),
        (Role.MONITOR, ["pause"], []),
        (Role.ADMIN, ["pause", "cancel"], ["resume", "cancel"]),
    ],
)
def test_a_campaign_offers_only_the_actions_the_callers_role_may_take(
    role: Role, running: list[str], paused: list[str]
):
    view = {"id": 1, "allowed_actions": ["pause", "cancel"]}
    assert offered(who(role), view) == {"id": 1, "allowed_actions": running}
    assert offered(who(role), {**view, "allowed_actions": ["resume", "cancel"]}) == {
        "id": 1,
        "allowed_actions": paused,
    }
    assert view["allowed_actions"] == ["pause", "cancel"]  # the view itself is left alone


def test_a_caller_lists_its_own_organisation_and_a_platform_admin_every_one():
    assert scope(who(Role.ADMIN)) == "acme"
    assert scope(who(Role.ADMIN, platform=True)) is None


def test_who_reports_the_principals_name_organisation_and_role():
    w = who(Role.SUPERVISOR)
    assert (w.name, w.org, w.role) == ("t", "acme", "supervisor")
