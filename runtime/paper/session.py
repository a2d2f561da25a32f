"""A paper-trading session: an agent on live bars with a paper broker, until stopped.

    python -m runtime paper --session DIR

``DIR/spec.json`` says what to run (written by the supervisor; the session writes only in
``DIR/out``, the rest of the folder is read-only to it). The session:

- feeds the agent live bars (replay or Alpaca) through backtrader's live machinery, with the
  simulated paper broker (backtrader's own broker: market orders fill at the next bar's
  open, cash and positions tracked) or Alpaca's paper broker;
- records every decision (FMEL, mode ``PAPER``), flushing rows every couple of seconds; once
  a batch is stored it writes ``DIR/out/state.json`` (positions, cash, the last bar handled, open
  orders, the chain head), so what the state says is always on disk;
- answers ``GET /health`` and ``GET /ready`` on the unix socket ``DIR/out/health.sock`` (the
  sandbox has no network to listen on), and in a pod also over TCP on ``TRADEOPS_HTTP_PORT``
  (the kubelet's probes);
- stops cleanly on SIGTERM: the feed ends, the last rows and the summary are written, exit 0.

In a pod (a StatefulSet's, ``infra/k8s``), ``DIR`` is the pod's volume and the spec and the
agent's code come in the environment (``TRADEOPS_PAPER_SPEC``, ``TRADEOPS_AGENT_CODE``,
base64, checked against the spec's ``agent_sha256``): they are written into ``DIR`` at each
start, so what the pod runs is always what its StatefulSet says.

A restart resumes: the stored decision rows say which bar was handled last and the chain
head; the bars up to it are replayed at full speed to rebuild the strategy's state (their
orders are simulated again, not recorded or sent again), and recording continues the same
hash chain from the next bar.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import io
import json
import os
import re
import signal
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import backtrader as bt

from runtime.files import write_json
from runtime.fmel.store import DECISIONS, SUMMARIES
from runtime.paper.feed import Dispatcher, add_live_feeds, live_run
from runtime.paper.sources import BarSource
from runtime.paths import (
    CANNOT_START_PREFIX,
    CRASH_PREFIX,
    DEFAULT_DATA_DIR,
    HEALTH_SOCKET,
    PAPER_CANNOT_START,
    PAPER_OUT,
    PAPER_STATE,
)

SPEC_FILE = "spec.json"
_PART_NAME = re.compile(r"part-\d{5}\.parquet")
# in a pod, the session keeps serving /fmel this long after its last rows and summary are
# written, so the puller outside it takes them before the pod goes
POD_LINGER_S = 10.0
PULLED_ENV = "TRADEOPS_FMEL_PULLED"
SPEC_ENV = "TRADEOPS_PAPER_SPEC"
AGENT_ENV = "TRADEOPS_AGENT_CODE"
HTTP_PORT_ENV = "TRADEOPS_HTTP_PORT"
OUT = PAPER_OUT  # the session's only writable folder
STATE_FILE = PAPER_STATE
LATENCY_FILE = "latency.json"
MODE = "PAPER_TRADE"


@dataclass(frozen=True)
class PaperRun:
    agent_id: str
    run_id: str
    agent_file: Path
    symbols: tuple[str, ...]
    cash: float = 10_000.0
    feed: str = "replay"
    start: date | None = None
    bar_seconds: float = 1.0
    data_dir: Path | None = None
    fmel_dir: Path | None = None
    agent_version: str = ""
    user_id: str = ""
    flush_seconds: float = 2.0
    strategy: str | None = None  # the class to run, in a file with several
    params: dict[str, Any] = field(default_factory=dict)  # the strategy's own parameters

    @classmethod
    def load(cls, session: Path) -> PaperRun:
        doc = json.loads((session / SPEC_FILE).read_text())
        return cls(
            agent_id=doc["agent_id"],
            run_id=doc["run_id"],
            agent_file=session / doc["agent_file"],
            symbols=tuple(doc["symbols"]),
            cash=float(doc.get("cash") or 10_000.0),
            feed=doc.get("feed") or "replay",
            start=date.fromisoformat(doc["start"]) if doc.get("start") else None,
            bar_seconds=float(doc.get("bar_seconds", 1.0)),
            # the data folder a replay plays; none given (a pod): the data the image holds
            data_dir=Path(doc["data_dir"]) if doc.get("data_dir") else DEFAULT_DATA_DIR,
            fmel_dir=session / OUT / "fmel",
            agent_version=str(doc.get("agent_version") or ""),
            user_id=str(doc.get("user_id") or ""),
            flush_seconds=float(doc.get("flush_seconds", 2.0)),
            strategy=str(doc["strategy"]) if doc.get("strategy") else None,
            params=dict(doc.get("params") or {}),
        )


@dataclass
class Resume:
    last_bar: int
    chain_head: str
    last_time: datetime
    last_us: float


def find_resume(fmel_dir: Path, run_id: str) -> Resume | None:
    """Where a restarted session picks up: the last decision row on disk."""
    from runtime.fmel import store

    rows = store.read_rows(fmel_dir, run_id, last=1)
    if not rows:
        return None
    last = rows[-1]
    ts: datetime = last["timestamp"]
    return Resume(int(last["bar_number"]), str(last["complete_state_hash"]), ts,
                  ts.timestamp() * 1e6)  # fmt: skip


class Monitor(bt.Analyzer):
    """What /health reports, kept up to date every bar; and bar-to-order latencies."""

    params = (
        ("skip_until_us", None),  # bars replayed after a restart are not news
        ("after_bar", None),  # called once a bar is handled
    )

    def start(self) -> None:
        self.state: dict[str, Any] = {"decisions": 0, "last_bar": None, "equity": None,
                                      "cash": None, "positions": {}}  # fmt: skip
        self.latencies: list[float] = []
        self.open_orders: dict[int, dict[str, Any]] = {}

    def next(self) -> None:
        if self.p.after_bar is not None:
            self.p.after_bar()
        strat = self.strategy
        broker = strat.broker
        skip = self.p.skip_until_us
        if skip is not None:
            if bt.num2date(strat.datetime[0]).replace(tzinfo=UTC).timestamp() * 1e6 <= skip:
                return
            self.p.skip_until_us = None
        self.state["decisions"] += 1
        self.state["last_bar"] = bt.num2date(strat.datetime[0]).replace(tzinfo=UTC).isoformat()
        self.state["equity"] = float(broker.getvalue())
        self.state["cash"] = float(broker.getcash())
        self.state["positions"] = {
            d._name: {"size": float(p.size), "price": float(p.price), "last": float(d.close[0])}
            for d in strat.datas
            if (p := broker.getposition(d)).size
        }

    def notify_order(self, order: bt.Order) -> None:
        if order.status == order.Submitted:
            arrived = getattr(order.data, "arrived", None)
            if arrived is not None:
                self.latencies.append(time.perf_counter() - arrived)
        if order.alive():
            self.open_orders[order.ref] = {"symbol": order.data._name, "size": order.size,
                                           "type": order.getordername()}  # fmt: skip
        else:
            self.open_orders.pop(order.ref, None)


class Session:
    def __init__(self, folder: Path, source: BarSource | None = None) -> None:
        self.folder = folder
        self.out = folder / OUT  # the rest of the folder is the supervisor's, read-only here
        self.out.mkdir(exist_ok=True)
        self.run = PaperRun.load(folder)
        self.started = time.time()
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.resume = find_resume(self.run.fmel_dir or self.out / "fmel", self.run.run_id)
        self.source = source or self._source()
        self.collector = Collector()
        self.dispatcher = Dispatcher(
            self.source, self.run.symbols, before_start=self.collector.start
        )
        self.monitor: Monitor | None = None
        self.flushed: dict[str, Any] = {}
        self.cerebro: bt.Cerebro | None = None

    def _source(self) -> BarSource:
        if self.run.feed == "alpaca":
            from runtime.paper.alpaca import AlpacaSource, alpaca_credentials

            creds = alpaca_credentials(os.environ)
            return AlpacaSource(creds.api_key, creds.secret_key,
                                url=os.environ.get("ALPACA_DATA_STREAM_URL") or None,
                                feed=os.environ.get("ALPACA_DATA_FEED") or "iex")  # fmt: skip
        from runtime.paper.replay import ReplaySource

        assert self.run.data_dir is not None
        return ReplaySource(self.run.data_dir, start=self.run.start,
                            bar_seconds=self.run.bar_seconds,
                            fast_until=self.resume.last_time if self.resume else None)  # fmt: skip

    # ------------------------------------------------------------------ running
    def run_until_stopped(self) -> int:
        from runtime.agent import fresh_counters, load_agent, strategy_params
        from runtime.fmel import FMELRecorder

        agent = load_agent(self.run.agent_file, self.run.strategy)
        params = strategy_params(agent.strategy, self.run.params)
        cerebro = bt.Cerebro(stdstats=False)
        self.cerebro = cerebro
        add_live_feeds(cerebro, self.dispatcher, self.run.symbols, self._idle)
        if self.run.feed == "alpaca":  # Alpaca's paper account: its cash, its positions
            from runtime.paper.alpaca import AlpacaBroker, alpaca_credentials, trading_client

            client = trading_client(alpaca_credentials(os.environ),
                                    url=os.environ.get("ALPACA_API_URL") or None)  # fmt: skip
            # order ids from the run's own bar count, which goes on across restarts, so a
            # bar handled again after a crash reuses its ids and Alpaca refuses a repeat
            offset, run_id = (self.resume.last_bar if self.resume else 0), self.run.run_id
            cerebro.setbroker(AlpacaBroker(
                client=client, run_id=run_id,
                order_id=lambda order, n: f"{run_id}-{offset + len(order.data)}-{n}"))  # fmt: skip
        else:  # the simulated paper broker: market orders fill at the next bar's open
            cerebro.broker.setcash(self.run.cash)
        cerebro.addstrategy(agent.strategy, **params)
        fresh_counters()
        r = self.resume
        cerebro.addanalyzer(
            FMELRecorder, out=str(self.run.fmel_dir), run_id=self.run.run_id,
            agent_id=self.run.agent_id, agent_version=self.run.agent_version,
            user_id=self.run.user_id, mode="PAPER", batch_rows=256,
            flush_seconds=self.run.flush_seconds, prev_hash=r.chain_head if r else None,
            first_bar=r.last_bar + 1 if r else 1, skip_until_us=r.last_us if r else None,
            on_flush=self._flushed,
        )  # fmt: skip
        cerebro.addanalyzer(Monitor, _name="monitor", skip_until_us=r.last_us if r else None,
                            after_bar=self.collector.bar)  # fmt: skip
        # a resumed replay starts from the beginning: the handled bars rebuild the state;
        # a live feed cannot, and starts after the last bar handled
        live_after = r.last_time if (r and self.run.feed == "alpaca") else None
        self.dispatcher.start(after=live_after)
        with _quiet_replay(cerebro, r.last_us if (r and live_after is None) else None):
            strat = cerebro.run(**live_run(simulated=self.run.feed != "alpaca"))[0]
        self.monitor = strat.analyzers.monitor
        self._save_state(final=True)
        (self.out / LATENCY_FILE).write_text(json.dumps(self.monitor.latencies))
        return 0

    def _idle(self) -> None:
        """No bar for a moment: store the decisions that wait (live bars are far apart),
        and collect garbage now rather than in the middle of a bar."""
        self.collector.idle()
        runstrats = getattr(self.cerebro, "runningstrats", None)
        if runstrats:
            for analyzer in runstrats[0].analyzers:
                flush = getattr(analyzer, "flush_if_due", None)
                if flush is not None:
                    flush()

    def stop(self) -> None:
        self.stopping.set()
        self.dispatcher.stop()

    def _flushed(self, head: str, last_bar: int, last_us: float | None) -> None:
        self.flushed = {"chain_head": head, "last_bar_number": last_bar,
                        "last_bar_time": None if last_us is None else
                        datetime.fromtimestamp(last_us / 1e6, UTC).isoformat()}  # fmt: skip
        self._save_state()

    def _save_state(self, final: bool = False) -> None:
        mon = self._monitor()
        doc = {
            "run_id": self.run.run_id,
            "agent_id": self.run.agent_id,
            **self.flushed,
            "cash": mon.state["cash"] if mon else None,
            "equity": mon.state["equity"] if mon else None,
            "positions": mon.state["positions"] if mon else {},
            "open_orders": list(mon.open_orders.values()) if mon else [],
            "stopped": final,
            "saved_at": time.time(),
        }
        write_json(self.out / STATE_FILE, doc, allow_nan=True)

    def _monitor(self) -> Monitor | None:
        if self.monitor is not None:
            return self.monitor
        cerebro = self.cerebro
        runstrats = getattr(cerebro, "runningstrats", None) if cerebro else None
        if runstrats:
            self.monitor = runstrats[0].analyzers.monitor
        return self.monitor

    def health(self) -> dict[str, Any]:
        mon = self._monitor()
        state = mon.state if mon else {}
        if mon is not None and state.get("decisions"):
            self.ready.set()
        return {
            "status": "stopping" if self.stopping.is_set() else "ok",
            "agent_id": self.run.agent_id,
            "run_id": self.run.run_id,
            "mode": MODE,
            "uptime": round(time.time() - self.started, 1),
            "decisions": state.get("decisions", 0) + (self.resume.last_bar if self.resume else 0),
            "last_bar": state.get("last_bar"),
            "equity": state.get("equity"),
            "cash": state.get("cash"),
            "positions": state.get("positions", {}),
            "resumed_from_bar": self.resume.last_bar if self.resume else None,
        }


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def write_session_from_env(folder: Path, env: Mapping[str, str] | None = None) -> bool:
    """In a pod: the spec and the agent's code from the environment into ``folder`` (the
    pod's volume); False when they are not there (a local session's folder has them)."""
    env = os.environ if env is None else env
    spec_text = env.get(SPEC_ENV)
    if not spec_text:
        return False
    spec = json.loads(spec_text)
    code = base64.b64decode(env.get(AGENT_ENV, ""), validate=True)
    if hashlib.sha256(code).hexdigest() != spec.get("agent_sha256"):
        raise ValueError(f"{AGENT_ENV} is not the agent whose sha256 the spec names")
    name = str(spec.get("agent_file") or "agent.py")
    if "/" in name or name.startswith("."):
        raise ValueError(f"the spec's agent_file {name!r} is not a plain file name")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(code)
    write_json(folder / SPEC_FILE, {**spec, "agent_file": name})
    return True


def serve_health(session: Session) -> list[Any]:
    """``/health`` and ``/ready`` on the session's unix socket, and over TCP on
    ``TRADEOPS_HTTP_PORT`` when it is set (in a pod). The servers, to shut down."""
    path = session.out / HEALTH_SOCKET
    path.unlink(missing_ok=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = self.path.split("?", 1)[0]
            if route.startswith("/fmel"):
                self._fmel(route)
                return
            if route == "/health":
                code, body = 200, session.health()
            elif route == "/ready":
                session.health()
                ready = session.ready.is_set() and not session.stopping.is_set()
                code, body = (200 if ready else 503), {"ready": ready}
            else:
                code, body = 404, {"error": "not found"}
            self._send(code, json.dumps(body).encode(), "application/json")

        def _fmel(self, route: str) -> None:
            """The run's decision record as written (for a puller outside the pod, which
            checks it all: what this serves is no more trusted than the files)."""
            record, run_id = session.run.fmel_dir, session.run.run_id
            if record is None:
                self._send(404, b"{}", "application/json")
                return
            rows, summary = record / DECISIONS / run_id, record / SUMMARIES / f"{run_id}.parquet"
            if route == "/fmel":
                names = sorted(p.name for p in rows.glob("part-*.parquet")) if rows.is_dir() else []
                body = {"run_id": session.run.run_id, "parts": names, "summary": summary.is_file(),
                        "stopped": session.stopping.is_set()}  # fmt: skip
                self._send(200, json.dumps(body).encode(), "application/json")
            else:
                name = route.removeprefix("/fmel/")
                path = summary if name == "summary" else rows / name
                if not (_PART_NAME.fullmatch(name) or name == "summary") or not path.is_file():
                    self._send(404, b"{}", "application/json")
                else:
                    self._send(200, path.read_bytes(), "application/octet-stream")

        def _send(self, code: int, data: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def address_string(self) -> str:
            return "local"

        def log_message(self, format: str, *args: Any) -> None:
            pass

    servers: list[Any] = [_UnixHTTPServer(str(path), Handler)]
    port = os.environ.get(HTTP_PORT_ENV, "").strip()
    if port:
        tcp = ThreadingHTTPServer(("0.0.0.0", int(port)), Handler)  # noqa: S104 - the probes'
        tcp.daemon_threads = True
        servers.append(tcp)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True, name="health").start()
    return servers


class Collector:
    """Python's garbage collection, kept out of the bars.

    The automatic collector's full passes walk every object the session keeps (backtrader
    holds every bar, order and trade) and stopped the strategy's thread for tens of ms in
    the middle of a bar. Here the objects of the set-up are frozen out of collection, the
    young generations are still collected automatically (short passes), and the full pass
    runs when the feed is idle, or at the latest every ``FULL_EVERY_S`` seconds.
    """

    FULL_EVERY_S = 60.0

    def __init__(self) -> None:
        self._last_full = time.monotonic()

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        young, middle, _full = gc.get_threshold()
        gc.set_threshold(young, middle, 1_000_000_000)  # no automatic full passes
        self._last_full = time.monotonic()

    def idle(self, min_gap_s: float = 1.0) -> None:
        if time.monotonic() - self._last_full >= min_gap_s:
            self.full()

    def bar(self) -> None:
        if time.monotonic() - self._last_full >= self.FULL_EVERY_S:
            self.full()

    def full(self) -> None:
        gc.collect()
        self._last_full = time.monotonic()


class _ReplayMuted(io.TextIOBase):
    """The agent's output while a resumed session replays the bars it had already handled:
    said the first time, it is dropped, so the log tells each trade once."""

    def __init__(self, stream: Any, replaying: Any) -> None:
        self.stream, self.replaying = stream, replaying

    def write(self, text: str) -> int:
        return len(text) if self.replaying() else int(self.stream.write(text))

    def flush(self) -> None:
        self.stream.flush()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return int(self.stream.fileno())


@contextlib.contextmanager
def _quiet_replay(cerebro: bt.Cerebro, until_us: float | None) -> Iterator[None]:
    if until_us is None:
        yield
        return
    done = False

    def replaying() -> bool:
        nonlocal done
        if done:
            return False
        strats = getattr(cerebro, "runningstrats", None)
        if not strats or not len(strats[0]):
            return False  # setting up: said once per start, as it happens
        bar_us = bt.num2date(strats[0].datetime[0]).replace(tzinfo=UTC).timestamp() * 1e6
        done = bar_us > until_us
        return not done

    saved = sys.stdout, sys.stderr
    print(f"-- replaying the bars handled before the restart (up to "
          f"{datetime.fromtimestamp(until_us / 1e6, UTC):%Y-%m-%d %H:%M}); "
          "the agent's output for them is not repeated", file=sys.stderr, flush=True)  # fmt: skip
    sys.stdout, sys.stderr = _ReplayMuted(saved[0], replaying), _ReplayMuted(saved[1], replaying)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def main(folder: Path) -> int:
    # a bar waits at most this long for the GIL while the FMEL writer thread stores a batch
    # (Python's default is 5 ms a turn, and several threads take turns)
    sys.setswitchinterval(0.001)
    try:
        write_session_from_env(folder)
        session = Session(folder)
    except Exception as exc:
        return _cannot_start(exc)
    servers = serve_health(session)

    def on_signal(signum: int, frame: Any) -> None:
        session.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        code = session.run_until_stopped()
    except Exception as exc:
        if session.dispatcher.started:  # it ran: a crash, restarted by the supervisor
            print(CRASH_PREFIX + _one_line(exc), file=sys.stderr, flush=True)
            raise
        return _cannot_start(exc)
    finally:
        if os.environ.get(PULLED_ENV):  # in a pod whose rows are taken over HTTP: the last
            time.sleep(POD_LINGER_S)  # ones and the summary, before it goes
        for server in servers:
            server.shutdown()
        (folder / OUT / HEALTH_SOCKET).unlink(missing_ok=True)
    print(f"paper session {session.run.run_id} stopped", file=sys.stderr)
    return code


def _cannot_start(exc: Exception) -> int:
    """Failed before its first bar: the whole story in the log, then one line saying why."""
    traceback.print_exception(exc)
    print(CANNOT_START_PREFIX + _one_line(exc), file=sys.stderr, flush=True)
    return PAPER_CANNOT_START


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
