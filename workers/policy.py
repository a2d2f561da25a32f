"""Who may do what: the permission rules every front-end applies before taking work.

An agent belongs to whoever uploaded its first version. Its owner and the admins may upload
new versions of it, backtest it, and start or stop its paper trading; paper trading also
needs the trader role (admins have it). Roles come from settings (``TRADEOPS_ADMINS``,
``TRADEOPS_TRADERS``: Slack user ids). Each refusal is one line that says why and what to
do about it.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.ports import Agent


class Refused(PermissionError):
    """The user may not do this: the message is one line, ready to show."""


@dataclass(frozen=True)
class Roles:
    admins: frozenset[str] = frozenset()
    traders: frozenset[str] = frozenset()

    def is_admin(self, user: str) -> bool:
        return user in self.admins

    def is_trader(self, user: str) -> bool:
        return user in self.traders or user in self.admins


def _owner_or_admin(roles: Roles, user: str, agent: Agent, doing: str) -> None:
    if user != agent.owner and not roles.is_admin(user):
        raise Refused(
            f"agent {agent.name} belongs to {agent.owner}: only its owner or an admin "
            f"may {doing} it"
        )


def check_upload(roles: Roles, user: str, agent: Agent | None) -> None:
    """A new agent name is anyone's; a new version of an existing agent is its owner's."""
    if agent is not None:
        _owner_or_admin(roles, user, agent, "upload new versions of")


def check_run(roles: Roles, user: str, agent: Agent | None) -> None:
    """Backtests, and reading a run's decisions (an unknown agent is left for the job)."""
    if agent is not None:
        _owner_or_admin(roles, user, agent, "run")


def check_paper(roles: Roles, user: str, agent: Agent | None) -> None:
    """Starting or stopping paper trading."""
    if not roles.is_trader(user):
        raise Refused(
            "paper trading needs the trader role: ask an admin to add you to TRADEOPS_TRADERS"
        )
    if agent is not None:
        _owner_or_admin(roles, user, agent, "paper-trade")
