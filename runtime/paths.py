"""Where the runtime's bundled files are (importing this loads nothing heavy)."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = PACKAGE_DIR / "sample_data" / "daily"
EXAMPLES_DIR = PACKAGE_DIR / "examples"

# the files of `python -m runtime backtest --out DIR`, read back by the runners
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.json"

# a paper session's folder: it writes only in OUT (rows, state, health socket, latencies)
PAPER_OUT = "out"
HEALTH_SOCKET = "health.sock"
