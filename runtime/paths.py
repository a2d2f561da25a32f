"""Where the runtime's bundled files are (importing this loads nothing heavy)."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = PACKAGE_DIR / "sample_data" / "daily"
EXAMPLES_DIR = PACKAGE_DIR / "examples"

# the files of `python -m runtime backtest --out DIR`, read back by the runners
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.json"
# a progress line in a run's log, for runners that see only the log (Cloud Build)
PROGRESS_LINE = "##tradeops-progress "

# a paper session's folder: it writes only in OUT (rows, state, health socket, latencies)
PAPER_OUT = "out"
HEALTH_SOCKET = "health.sock"
PAPER_STATE = "state.json"
# a paper session's exit status when it cannot start (bad data, an agent that fails before
# its first bar): the same request fails the same way, so it is not restarted
PAPER_CANNOT_START = 3
CANNOT_START_PREFIX = "tradeops: the session cannot start: "
# a session that crashes after its first bar says why in one line (then the traceback)
CRASH_PREFIX = "tradeops: the session crashed: "
