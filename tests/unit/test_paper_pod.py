"""A paper session in a pod: its spec and its agent's code come in the environment, checked."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from runtime.paper.session import AGENT_ENV, SPEC_ENV, SPEC_FILE, write_session_from_env

CODE = b"import backtrader as bt\n\nclass S(bt.Strategy):\n    pass\n"


def env_for(code: bytes, **spec: object) -> dict[str, str]:
    doc = {"agent_id": "sma", "run_id": "p1", "agent_file": "agent.py", "symbols": ["SPY"],
           "agent_sha256": hashlib.sha256(code).hexdigest(), **spec}  # fmt: skip
    return {SPEC_ENV: json.dumps(doc), AGENT_ENV: base64.b64encode(code).decode()}


def test_the_spec_and_the_code_land_in_the_volume(tmp_path: Path) -> None:
    assert write_session_from_env(tmp_path / "session", env_for(CODE))
    assert (tmp_path / "session" / "agent.py").read_bytes() == CODE
    assert json.loads((tmp_path / "session" / SPEC_FILE).read_text())["run_id"] == "p1"


def test_nothing_in_the_environment_is_a_local_session(tmp_path: Path) -> None:
    assert not write_session_from_env(tmp_path, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({**env_for(CODE), AGENT_ENV: base64.b64encode(b"other").decode()}, "sha256"),
        ({**env_for(CODE), AGENT_ENV: "not base64!"}, "[Ii]ncorrect padding|base64|Non-base64"),
        (env_for(CODE, agent_file="../escape.py"), "plain file name"),
        (env_for(CODE, agent_file=".hidden"), "plain file name"),
    ],
)
def test_what_does_not_match_is_refused(tmp_path: Path, env: dict[str, str], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        write_session_from_env(tmp_path / "session", env)
    assert not (tmp_path / "escape.py").exists()
