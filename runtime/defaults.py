"""Defaults shared by the runtime and its callers (importing this loads nothing heavy)."""

DEFAULT_SYMBOLS = ("SPY",)
DEFAULT_CASH = 10_000.0  # backtrader's own default, so numbers match a plain Cerebro
DEFAULT_TIMEOUT_S = 20 * 60  # the seed's Cloud Build limit
# how a result's look-ahead warning begins: front-ends flag such runs wherever they list them
LOOKAHEAD_WARNING = "look-ahead: "
