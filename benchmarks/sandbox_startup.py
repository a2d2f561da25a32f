"""What the sandbox adds: the same small backtest in-process and sandboxed, alternating.

    python benchmarks/sandbox_startup.py [--pairs 7] [--bars 250]

Prints the median wall time of each, the median added cost (target <= 0.3 s), and where
the added time goes: bubblewrap starting a trivial command, Python starting inside the
sandbox, and importing the runtime there.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from infra.local.runner import SubprocessRunner
from infra.local.sandbox import Sandbox
from runtime.backtest import BacktestRequest, run_backtest
from runtime.data import write_synthetic_dir
from runtime.paths import EXAMPLES_DIR


def sandboxed_command(sandbox: Sandbox, argv: list[str]) -> float:
    cmd = sandbox.command(argv, [], {"PATH": "/usr/bin:/bin"}, cwd="/")
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--bars", type=int, default=250)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sandbox-bench-"))
    data = write_synthetic_dir(tmp / "data", ["SYN"], n_bars=args.bars, seed=3)
    sandbox = Sandbox.detect()
    cold = SubprocessRunner(sandbox=sandbox)
    warm = SubprocessRunner(sandbox=sandbox, warm_dir=tmp / "warm")
    warm.prewarm()

    def request() -> BacktestRequest:
        return BacktestRequest(
            agent_file=EXAMPLES_DIR / "sma_cross.py",
            symbols=("SYN",),
            data_dir=data,
            fmel_dir=tmp / "fmel",
        )

    def in_process() -> None:
        assert run_backtest(request())["error"] is None

    def boxed_cold() -> None:
        req = request()
        assert cold.run_request(req, tmp / "runs" / req.run_id)["error"] is None

    def boxed_warm() -> None:
        req = request()
        assert warm.run_request(req, tmp / "runs" / req.run_id)["error"] is None
        time.sleep(3.0)  # a worker's idle time between jobs: the next sandbox warms up

    in_process()  # warm this process's imports, as a long-running worker has them
    boxed_cold()
    boxed_warm()
    times: dict[str, list[float]] = {"in": [], "cold": [], "warm": []}
    arms = {"in": in_process, "cold": boxed_cold, "warm": boxed_warm}
    for i in range(args.pairs):
        order = list(arms) if i % 2 == 0 else list(reversed(arms))
        for name in order:
            t0 = time.perf_counter()
            arms[name]()
            elapsed = time.perf_counter() - t0
            times[name].append(elapsed - (3.0 if name == "warm" else 0.0))
    warm.close()
    med = statistics.median
    py = sys.executable
    parts = {
        "bubblewrap + /bin/true": med(sandboxed_command(sandbox, ["/bin/true"]) for _ in range(5)),
        "python -c pass": med(sandboxed_command(sandbox, [py, "-c", "pass"]) for _ in range(5)),
        "import runtime.backtest": med(
            sandboxed_command(sandbox, [py, "-c", "import runtime.backtest"]) for _ in range(5)
        ),
    }
    print(f"isolation={sandbox.isolation.value} pairs={args.pairs} bars={args.bars}")
    added = {k: [b - a for a, b in zip(times["in"], times[k], strict=True)] for k in arms}
    print(
        f"medians: in-process {med(times['in']):.3f} s, "
        f"sandboxed cold {med(times['cold']):.3f} s, sandboxed warm {med(times['warm']):.3f} s"
    )
    print(f"added cost, warm sandbox (a worker): {med(added['warm']):.3f} s  (target <= 0.3 s)")
    print(f"added cost, cold sandbox (a one-off CLI run): {med(added['cold']):.3f} s")
    for name, seconds in parts.items():
        print(f"  sandboxed {name:<24} {seconds:.3f} s")


if __name__ == "__main__":
    main()
