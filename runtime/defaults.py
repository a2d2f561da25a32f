"""Defaults shared by the runtime and its callers (importing this loads nothing heavy)."""

DEFAULT_SYMBOLS = ("SPY",)
DEFAULT_CASH = 10_000.0  # backtrader's own default, so numbers match a plain Cerebro
DEFAULT_TIMEOUT_S = 20 * 60  # the seed's Cloud Build limit
# how a result's look-ahead warning begins: front-ends flag such runs wherever they list them
LOOKAHEAD_WARNING = "look-ahead: "


def stored_warnings(result: object) -> tuple[int, bool]:
    """A stored result document's warnings: (how many, whether one is look-ahead)."""
    found = result.get("warnings") if isinstance(result, dict) else None
    texts = [w for w in found if isinstance(w, str)] if isinstance(found, list) else []
    return len(texts), any(w.startswith(LOOKAHEAD_WARNING) for w in texts)
