"""Settings from the environment (DESIGN.md section 3), checked once at start."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runtime.paths import DEFAULT_DATA_DIR


class SettingsError(ValueError):
    """A missing or wrong setting: the message is one line naming the variable."""


@dataclass(frozen=True)
class Settings:
    home: Path
    data_dir: Path
    backend: str = "local"

    @property
    def fmel_dir(self) -> Path:
        return self.home / "fmel"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("TRADEOPS_HOME") or ".tradeops").expanduser().resolve()
        data_dir = Path(env.get("TRADEOPS_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
        if not data_dir.is_dir():
            raise SettingsError(f"TRADEOPS_DATA_DIR: {data_dir} is not a folder")
        backend = env.get("TRADEOPS_BACKEND") or "local"
        if backend not in ("local", "gcp"):
            raise SettingsError(f"TRADEOPS_BACKEND: expected 'local' or 'gcp', got {backend!r}")
        if home.exists() and not home.is_dir():
            raise SettingsError(f"TRADEOPS_HOME: {home} exists and is not a folder")
        return cls(home=home, data_dir=data_dir.resolve(), backend=backend)
