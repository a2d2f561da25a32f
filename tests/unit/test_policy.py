"""workers.policy: who may upload, run and paper-trade an agent, and how a refusal reads."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from workers.policy import Refused, Roles, check_paper, check_run, check_upload
from workers.ports import Agent

OWNER, ADMIN, TRADER, OTHER = "UOWNER", "UADMIN", "UTRADER", "UOTHER"
ROLES = Roles(admins=frozenset({ADMIN}), traders=frozenset({TRADER}))
# the owner is a trader in some cases below, so owner rights and the trader role stay apart
OWNER_TRADES = Roles(admins=frozenset({ADMIN}), traders=frozenset({TRADER, OWNER}))
AGENT = Agent(name="momentum", owner=OWNER, created_at=0.0, latest_version=3)
TRADERS_AGENT = Agent(name="carry", owner=TRADER, created_at=0.0, latest_version=1)

Check = Callable[[Roles, str, "Agent | None"], None]


def allowed(check: Check, roles: Roles, user: str, agent: Agent | None) -> bool:
    try:
        check(roles, user, agent)
    except Refused:
        return False
    return True


@pytest.mark.parametrize(
    ("check", "user", "agent", "expected"),
    [
        # uploads: owner and admins for an existing agent, anyone for a new name
        (check_upload, OWNER, AGENT, True),
        (check_upload, ADMIN, AGENT, True),
        (check_upload, TRADER, AGENT, False),
        (check_upload, OTHER, AGENT, False),
        (check_upload, OWNER, None, True),
        (check_upload, TRADER, None, True),
        (check_upload, OTHER, None, True),
        # backtests: the same, and an unknown agent is left for the job to report
        (check_run, OWNER, AGENT, True),
        (check_run, ADMIN, AGENT, True),
        (check_run, TRADER, AGENT, False),
        (check_run, OTHER, AGENT, False),
        (check_run, OTHER, None, True),
        (check_run, ADMIN, None, True),
        # paper trading: the trader role (admins have it), then owner or admin
        (check_paper, OWNER, AGENT, False),  # the owner, but not a trader
        (check_paper, ADMIN, AGENT, True),
        (check_paper, TRADER, AGENT, False),  # a trader, but not the owner
        (check_paper, OTHER, AGENT, False),
        (check_paper, TRADER, TRADERS_AGENT, True),
        (check_paper, ADMIN, TRADERS_AGENT, True),
        (check_paper, OTHER, TRADERS_AGENT, False),
        (check_paper, TRADER, None, True),
        (check_paper, ADMIN, None, True),
        (check_paper, OTHER, None, False),
        (check_paper, OWNER, None, False),
    ],
)
def test_who_may_do_what(check: Check, user: str, agent: Agent | None, expected: bool) -> None:
    assert allowed(check, ROLES, user, agent) is expected


@pytest.mark.parametrize(
    ("check", "user", "expected"),
    [
        (check_upload, OWNER, True),
        (check_run, OWNER, True),
        (check_paper, OWNER, True),  # owner and trader: allowed
        (check_paper, TRADER, False),  # still not the owner
        (check_paper, ADMIN, True),
    ],
)
def test_an_owner_with_the_trader_role_may_paper_trade(
    check: Check, user: str, expected: bool
) -> None:
    assert allowed(check, OWNER_TRADES, user, AGENT) is expected


def test_roles_default_to_nobody() -> None:
    roles = Roles()
    assert roles.admins == frozenset()
    assert roles.traders == frozenset()
    for user in (OWNER, ADMIN, TRADER, OTHER, ""):
        assert not roles.is_admin(user)
        assert not roles.is_trader(user)


def test_admins_are_traders_and_traders_are_not_admins() -> None:
    assert ROLES.is_admin(ADMIN) and ROLES.is_trader(ADMIN)
    assert ROLES.is_trader(TRADER) and not ROLES.is_admin(TRADER)
    assert not ROLES.is_admin(OTHER) and not ROLES.is_trader(OTHER)


def test_with_default_roles_only_the_owner_may_upload_and_run_and_nobody_paper_trades() -> None:
    roles = Roles()
    assert allowed(check_upload, roles, OWNER, AGENT)
    assert allowed(check_run, roles, OWNER, AGENT)
    assert not allowed(check_upload, roles, ADMIN, AGENT)
    assert not allowed(check_run, roles, ADMIN, AGENT)
    for user in (OWNER, ADMIN, TRADER):
        assert not allowed(check_paper, roles, user, AGENT)
        assert not allowed(check_paper, roles, user, None)


def refusal(check: Check, roles: Roles, user: str, agent: Agent | None) -> str:
    with pytest.raises(Refused) as caught:
        check(roles, user, agent)
    return str(caught.value)


@pytest.mark.parametrize(
    ("check", "doing"),
    [
        (check_upload, "upload new versions of"),
        (check_run, "run"),
        (check_paper, "paper-trade"),
    ],
)
def test_a_refusal_for_someone_elses_agent_names_the_agent_and_its_owner(
    check: Check, doing: str
) -> None:
    message = refusal(check, ROLES, TRADER, AGENT)  # a trader, so paper gets past the role
    assert "\n" not in message
    assert AGENT.name in message
    assert OWNER in message
    assert "owner or an admin" in message
    assert doing in message


@pytest.mark.parametrize("user", [OWNER, OTHER])
@pytest.mark.parametrize("agent", [AGENT, None])
def test_a_refusal_for_the_trader_role_says_how_to_get_it(user: str, agent: Agent | None) -> None:
    message = refusal(check_paper, ROLES, user, agent)
    assert "\n" not in message
    assert "trader role" in message
    assert "TRADEOPS_TRADERS" in message
    assert "admin" in message  # who to ask


def test_refused_is_a_permission_error() -> None:
    assert issubclass(Refused, PermissionError)
