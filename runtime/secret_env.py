"""Secrets from the environment: given directly, or as the path of a file holding one (what
a mounted Kubernetes Secret gives). Shared by the settings and the runtime's Alpaca keys."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def read_secret(env: Mapping[str, str], name: str) -> str | None:
    """``name``'s value, or the text of the file ``{name}_FILE`` names (stripped); None when
    neither is set. ``ValueError`` in one line, never showing the value, for both set or a
    file that cannot be read as text."""
    value, path = env.get(name, "").strip(), env.get(f"{name}_FILE", "").strip()
    if value and path:
        raise ValueError(f"set {name} or {name}_FILE, not both")
    if not path:
        return value or None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{name}_FILE: {path} is not UTF-8 text") from None
