"""Files other processes read while they are being replaced: written whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, doc: Any, *, allow_nan: bool = False) -> None:
    """Replace ``path`` with ``doc`` as JSON atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, allow_nan=allow_nan))
    os.replace(tmp, path)
