"""FMELRecorder: one decision record per bar, for any backtrader Cerebro.

    cerebro.addanalyzer(FMELRecorder, out="/path/to/fmel")

The hot path (one call per bar) only appends to column lists; encoding, hashing and
writing happen per batch in :meth:`FMELRecorder._flush`, so recording costs a few
microseconds per bar and memory stays flat however long the run.

What is observed, and how, without changing what the strategy does:

* cash and value: backtrader calls ``notify_cashvalue`` on analyzers every bar;
* orders placed: new entries of the broker's append-only ``orders`` list since the
  last bar (fallback for brokers without one: the ``Submitted`` notifications);
* fills: ``notify_order`` with ``Partial``/``Completed`` and the order's pending
  execution bits;
* positions: re-read from the broker when a fill arrives, valued at the bar's close;
* indicators: each line of each indicator the strategy created, read at the bar;
* data accessed: the data feeds' lines get a subclass whose ``__getitem__``/``get``
  note the deepest (and any look-ahead) index read while the strategy's
  ``next``/``prenext``/``nextstart`` runs;
* log: ``sys.stdout``/``sys.stderr`` are teed while the run lasts; text printed
  during a bar belongs to that bar.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np
from backtrader.linebuffer import LineBuffer
from backtrader.lineroot import LineRoot, LineSingle
from backtrader.lineseries import Lines

from runtime.defaults import LOOKAHEAD_WARNING
from runtime.fmel import encoding as enc
from runtime.fmel.probe import Tracker
from runtime.fmel.store import BatchWriter, RunHeader, read_summary

LOG_CHARS_PER_BAR = 16_384  # what one bar's log keeps; an agent printing more is cut


class _LogSink:
    """What the agent printed during the current bar, up to a budget."""

    __slots__ = ("dropped", "parts", "room")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.room = LOG_CHARS_PER_BAR
        self.dropped = 0

    def add(self, s: str) -> None:
        if len(s) <= self.room:
            self.parts.append(s)
            self.room -= len(s)
        else:
            if self.room > 0:
                self.parts.append(s[: self.room])
            self.dropped += len(s) - max(self.room, 0)
            self.room = 0

    def take(self) -> list[str]:
        lines = "".join(self.parts).splitlines()
        if self.dropped:
            lines.append(f"[{self.dropped} more characters printed, not recorded]")
        self.parts.clear()
        self.room = LOG_CHARS_PER_BAR
        self.dropped = 0
        return lines


class _Tee(io.TextIOBase):
    """Passes writes through and keeps a copy for the current bar's log."""

    def __init__(self, inner: Any, sink: _LogSink) -> None:
        self._inner = inner
        self._sink = sink

    def write(self, s: str) -> int:
        self._sink.add(s)
        return int(self._inner.write(s))

    def flush(self) -> None:
        self._inner.flush()

    def fileno(self) -> int:
        return int(self._inner.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._inner, "encoding", "utf-8"))


def new_run_id() -> str:
    """Sortable by start time, unique across machines."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


class FMELRecorder(bt.Analyzer):
    params = (
        ("out", None),  # FMEL folder; None keeps nothing on disk (hashes only)
        ("run_id", None),
        ("agent_id", ""),
        ("agent_version", ""),
        ("user_id", ""),
        ("mode", "BACKTEST"),
        ("batch_rows", 8192),
        ("flush_seconds", None),  # also flush when this much time passed (paper mode)
        ("capture_log", True),
        ("track_data", True),
        ("prev_hash", None),  # continue a chain (paper restarts): previous head
        ("first_bar", 1),  # bar_number of the first row (paper restarts)
        # paper restarts: bars up to this time (UTC µs) were recorded before the restart;
        # they are replayed to rebuild the strategy's state, not recorded again
        ("skip_until_us", None),
        # paper mode: called as on_flush(chain_head, last_bar, last_ts_us) once a batch and
        # the run's summary are on disk
        ("on_flush", None),
    )

    # close() may run after a start() that failed part-way: it must not mask that failure
    _saved_streams: tuple[Any, Any] | None = None
    _guarded: list[tuple[Any, str]] = []  # noqa: RUF012  # replaced per instance, never mutated
    kept_after_failure = False  # the run failed and its finished bars were stored
    warnings: list[str] = []  # noqa: RUF012  # same

    # ----------------------------------------------------------------- set-up
    def start(self) -> None:
        strat = self.strategy
        self.run_id: str = self.p.run_id or new_run_id()
        self._datas = list(strat.datas)
        self._symbols = [d._name or f"data{i}" for i, d in enumerate(self._datas)]
        self._ind_names, self._ind_lines, self.warnings = _indicator_lines(strat)
        self._closes = [d.lines.close for d in self._datas]
        self._header = RunHeader(
            run_id=self.run_id,
            agent_id=self.p.agent_id,
            agent_version=str(self.p.agent_version),
            user_id=self.p.user_id,
            mode=self.p.mode,
            symbols=tuple(self._symbols),
            indicators=tuple(self._ind_names),
        )
        self._genesis = enc.genesis(self._symbols, self._ind_names)
        self._head = self.p.prev_hash or self._genesis
        self._writer = BatchWriter(Path(self.p.out), self._header) if self.p.out else None
        self._background = _Background()
        if self._writer is not None and self.p.flush_seconds:  # live: no bar pays for it
            self._writer.warm_up()
        self._cash = self._value = float("nan")
        self._bar = int(self.p.first_bar) - 1
        self._flat = (0.0,) * (3 * len(self._datas))
        self._pos = self._flat
        self._decisions = 0
        self._counts = dict.fromkeys(enc.ACTIONS, 0)
        self._first_ts: float | None = None
        self._first_bar = int(self.p.first_bar)
        if self.p.prev_hash and self.p.out:
            self._resume(Path(self.p.out))
        self._last_ts: float | None = None
        self._last_flush = time.monotonic()
        self._last_row = int(self.p.batch_rows) - 1
        self._flush_seconds = self.p.flush_seconds
        self._orders_seen = 0
        self._orders_list = getattr(strat.broker, "orders", None)
        self._pending_fills: list[tuple[Any, ...]] = []
        self._submitted: list[tuple[Any, ...]] = []
        self._refs: dict[int, int] = {}
        self._dtline = strat.lines.datetime
        self._reset_columns()
        self._tracker = Tracker()
        self._access_codes: dict[tuple[Any, ...], int] = {(): 0}
        self._last_seen: dict[tuple[int, str], list[int]] = {}
        self._lookahead: dict[int, list[tuple[str, str, int]]] = {}  # code -> what, how far
        self._lookahead_bars = 0
        self._last_code = 0
        self._access_patterns: list[tuple[bytes, list[dict[str, Any]]]] = [(b"", [])]
        if self.p.track_data:
            self._install_probes()
        self._log = _LogSink()
        self._logbuf = self._log.parts  # checked every bar: a plain list is quickest
        self._bind_hot_path()
        if self.p.capture_log:
            self._saved_streams = (sys.stdout, sys.stderr)
            sys.stdout = _Tee(sys.stdout, self._log)
            sys.stderr = _Tee(sys.stderr, self._log)
            self._restore_on_error()

    def _restore_on_error(self) -> None:
        """Give the streams back if the run fails: backtrader never calls stop() then.

        Wraps the cerebro's run loop and the strategy's stop, which run once a run (they
        are looked up after the analyzers start), so nothing is added to the per-bar path.
        """
        self._guarded = [(self.strategy.cerebro, n) for n in _RUN_LOOPS]
        self._guarded.append((self.strategy, "_stop"))
        for obj, name in self._guarded:
            setattr(obj, name, _closing_on_error(getattr(obj, name), self._abandon))

    def _resume(self, root: Path) -> None:
        """Continuing a run (a paper session after a restart): carry its summary on."""
        prior = read_summary(root, self.run_id)
        if prior is None:
            return
        self._genesis = prior["genesis"]
        self._first_bar = int(prior["first_bar"])
        self._decisions = int(prior["decisions"])
        for action, count in prior["actions"].items():
            self._counts[action] = self._counts.get(action, 0) + int(count)
        first = prior["first_timestamp"]
        self._first_ts = None if first is None else float(enc.datetime_to_us(first))

    def _reset_columns(self) -> None:
        # per bar: (stage, time, value, cash, positions, code of the data-access pattern)
        self._c_rows: list[tuple[int, float, float, float, tuple[float, ...], int]] = []
        self._c_ind: list[float] = []  # flat: one value per indicator line per bar
        self._c_orders: dict[int, list[tuple[Any, ...]]] = {}
        self._c_fills: dict[int, list[tuple[Any, ...]]] = {}
        self._c_log: dict[int, list[str]] = {}

    def _install_probes(self) -> None:
        tracker = self._tracker
        for di, data in enumerate(self._datas):
            lines = data.lines.lines
            fields = data.lines.getlinealiases()
            tracker.add_feed(
                lines,
                {
                    li: (di, field)
                    for li, field in enumerate(fields)
                    if field != "datetime" and isinstance(lines[li], LineBuffer)
                },
            )
        strat = self.strategy
        for attr, value in list(vars(strat).items()):
            if not attr.startswith("_"):
                swapped = tracker.probe_held(value)
                if swapped is not value:
                    setattr(strat, attr, swapped)
        for name in ("next", "prenext", "nextstart"):
            setattr(strat, name, tracker.wrap(getattr(strat, name)))

    # ------------------------------------------------------- notifications
    def _notify_fund(self, *args: Any) -> None:  # not needed: skip backtrader's dispatch
        pass

    def notify_order(self, order: bt.Order) -> None:
        status = order.status
        if status == order.Submitted and self._orders_list is None:
            self._submitted.append(self._order_row(order))
        elif status in (order.Partial, order.Completed):
            sym = self._symbol_of(order.data)
            for bit in order.executed.iterpending():
                self._pending_fills.append(
                    (
                        sym,
                        float(bit.size),
                        float(bit.price),
                        float(bit.comm),
                        float(bit.pnl),
                        self._local_ref(order.ref),
                    )
                )
            self._pos = self._positions()

    # --------------------------------------------------------------- per bar
    # backtrader calls _prenext/_nextstart/_next, which loop over child analyzers
    # before calling prenext/nextstart/next; a recorder has none, so go straight in.
    def _prenext(self) -> None:
        self._record(0)

    def _nextstart(self) -> None:
        self._record(1)

    def _next(self) -> None:
        self._record(2)

    def _bind_hot_path(self) -> None:
        """Let backtrader call straight into _record, one Python frame less a bar."""
        if self.p.skip_until_us is not None:
            self._prenext = partial(self._catch_up, 0)  # type: ignore[method-assign]
            self._nextstart = partial(self._catch_up, 1)  # type: ignore[method-assign]
            self._next = partial(self._catch_up, 2)  # type: ignore[method-assign]
            return
        self._prenext = partial(self._record, 0)  # type: ignore[method-assign]
        self._nextstart = partial(self._record, 1)  # type: ignore[method-assign]
        self._next = partial(self._record, 2)  # type: ignore[method-assign]

    def _catch_up(self, stage: int) -> None:
        """A resumed paper session replays the bars it had already recorded: their
        orders and fills rebuild the strategy's state but are not recorded twice."""
        dtl = self._dtline
        now_us = float(enc.bt_num_to_us(np.asarray([dtl.array[dtl.idx]]))[0])
        if now_us <= float(self.p.skip_until_us):
            self._tracker.seen.clear()
            self._pending_fills = []
            self._submitted = []
            if self._orders_list is not None:
                self._orders_seen = len(self._orders_list)
            self._log.take()
            return
        self.p.skip_until_us = None
        self._bind_hot_path()
        self._record(stage)

    def _notify_cashvalue(self, cash: float, value: float) -> None:
        self._cash = cash
        self._value = value

    def _record(self, stage: int) -> None:
        """The hot path: one row tuple and the indicator values appended. Rare things
        (orders, fills, log) go to dicts keyed by the row."""
        rows = self._c_rows
        i = len(rows)
        tracker = self._tracker
        seen = tracker.seen
        if seen:  # the probes start the next bar's dict; most bars read what the last did
            tracker.seen = {}
            code = self._last_code if seen == self._last_seen else self._access_code(seen)
        else:
            code = 0
        dtl = self._dtline
        pos = self._pos
        rows.append(
            (
                stage,
                dtl.array[dtl.idx],
                self._value,
                self._cash,
                pos if pos is self._flat else self._revalue(pos),
                code,
            )
        )
        # _idx, not the idx property (a call): -1 while a line's own clock has not started
        # (runonce mode: reading array[-1] then would give the line's last value)
        try:
            self._c_ind += [ln.array[ln._idx] if ln._idx >= 0 else NAN for ln in self._ind_lines]
        except IndexError:
            self._c_ind += [_value_or_nan(ln) for ln in self._ind_lines]
        olist = self._orders_list
        if olist is not None:
            if len(olist) != self._orders_seen:
                self._take_orders(i, olist)
        elif self._submitted:
            self._c_orders[i] = self._submitted
            self._submitted = []
        if self._pending_fills:
            self._c_fills[i] = self._pending_fills
            self._pending_fills = []
        if self._logbuf:
            self._c_log[i] = self._log.take()
        if i >= self._last_row or (
            self._flush_seconds and time.monotonic() - self._last_flush >= self._flush_seconds
        ):
            self._flush()

    def flush_if_due(self) -> None:
        """Paper mode, between bars: store what waits once ``flush_seconds`` have passed
        (a live bar may be a minute away). Call from the thread that runs the strategy."""
        flush_s = self._flush_seconds
        if self._c_rows and flush_s and time.monotonic() - self._last_flush >= flush_s:
            self._flush()

    def _take_orders(self, i: int, olist: list[bt.Order]) -> None:
        n = len(olist)
        self._c_orders[i] = [self._order_row(o) for o in olist[self._orders_seen : n]]
        self._orders_seen = n

    def _access_code(self, seen: dict[tuple[int, str], list[int]]) -> int:
        """Number the bar's access pattern (patterns repeat: each is described once)."""
        key = tuple(sorted((k, lo, hi) for k, (lo, hi) in seen.items()))
        code = self._access_codes.get(key)
        if code is None:
            code = self._access_codes[key] = len(self._access_patterns)
            self._access_patterns.append(self._describe_access(key))
            ahead = [(self._symbols[di], f, hi) for (di, f), _lo, hi in key if hi > 0]
            if ahead:  # read from bars that had not happened yet: said in the warnings
                self._lookahead[code] = ahead
        self._last_seen, self._last_code = seen, code
        return code

    # --------------------------------------------------------------- helpers
    def _symbol_of(self, data: Any) -> str:
        for d, sym in zip(self._datas, self._symbols, strict=True):
            if d is data:
                return sym
        return str(getattr(data, "_name", "") or "?")

    def _order_row(self, o: bt.Order) -> tuple[Any, ...]:
        price = o.created.price
        return (
            "BUY" if o.isbuy() else "SELL",
            self._symbol_of(o.data),
            float(o.created.size),
            o.getordername(),
            None if price is None else float(price),
            self._local_ref(o.ref),
        )

    def _local_ref(self, ref: int) -> int:
        """backtrader numbers orders process-wide; the record numbers them per run."""
        local = self._refs.get(ref)
        if local is None:
            local = self._refs[ref] = len(self._refs) + 1
        return local

    def _positions(self) -> tuple[float, ...]:
        getpos = self.strategy.broker.getposition
        out: list[float] = []
        for d in self._datas:
            p = getpos(d)
            out += (float(p.size), float(p.price), 0.0)
        return self._flat if not any(out[0::3]) else tuple(out)

    def _revalue(self, pos: tuple[float, ...]) -> tuple[float, ...]:
        out = list(pos)
        for k, close in enumerate(self._closes):
            size = out[3 * k]
            if size:
                out[3 * k + 2] = size * close.array[close.idx]
        return tuple(out)

    # ------------------------------------------------------------- batching
    def _flush(self) -> None:
        """Cut the batch; it is encoded, hashed and written on the writer thread, so no
        bar waits for it (paper mode flushes every few seconds on a live thread)."""
        n = len(self._c_rows)
        if not n:
            return
        batch = _Batch(
            first_bar=self._bar + 1,
            rows=self._c_rows,
            ind=self._c_ind,
            orders=self._c_orders,
            fills=self._c_fills,
            logs=self._c_log,
        )
        self._bar += n
        self._reset_columns()
        self._last_flush = time.monotonic()
        self._background.submit(self._store, batch)

    def _store(self, b: _Batch) -> None:
        """On the writer thread, one batch at a time, in order: the chain goes on here."""
        n = len(b.rows)
        stages, times, values, cashes, positions, access = zip(*b.rows, strict=True)
        stage = np.asarray(stages, dtype=np.float64)
        ts_us = enc.bt_num_to_us(np.asarray(times, dtype=np.float64))
        action = np.where(stage == 0, 0.0, 1.0)
        if b.orders:
            action[list(b.orders)] = 2.0
        if b.fills:
            action[list(b.fills)] = 3.0
        head = [
            np.arange(b.first_bar, b.first_bar + n, dtype=np.float64),
            stage,
            ts_us,
            action,
            np.asarray(values, dtype=np.float64),
            np.asarray(cashes, dtype=np.float64),
        ]
        matrix = np.hstack(
            [
                np.column_stack(head),
                np.asarray(b.ind, dtype=np.float64).reshape(n, len(self._ind_lines)),
                np.asarray(positions, dtype=np.float64).reshape(n, len(self._flat)),
            ]
        )
        patterns = self._access_patterns[:]  # the strategy thread may append meanwhile
        variable = [patterns[c][0] for c in access]
        for rows, part in ((b.orders, enc.orders_part), (b.fills, enc.fills_part)):
            for i, items in rows.items():
                variable[i] += part(items)
        for i, lines in b.logs.items():
            variable[i] += enc.log_part(lines)
        state_hex, chained_hex = enc.hash_rows(matrix, variable, self._head)
        self._head = chained_hex[-64:].decode("ascii")
        self._count(action, ts_us)
        if self._lookahead:
            ahead = self._lookahead.copy()
            self._lookahead_bars += sum(1 for c in access if c in ahead)
        if self._writer is None:
            return
        table = self._writer.batch_table(
            matrix=matrix,
            access_codes=np.asarray(access, dtype=np.int64),
            access_patterns=[p[1] for p in patterns],
            orders=b.orders,
            fills=b.fills,
            logs=b.logs,
            state_hex=state_hex,
            chained_hex=chained_hex,
        )
        self._writer.write_part(table)
        if self.p.on_flush is not None:
            self._writer.write_summary(self.summary(), [])
            self.p.on_flush(self._head, b.first_bar + n - 1, self._last_ts)

    def _count(self, action: np.ndarray, ts_us: np.ndarray) -> None:
        codes, counts = np.unique(action.astype(np.int64), return_counts=True)
        for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
            self._counts[enc.ACTIONS[code]] += count
        if self._first_ts is None:
            self._first_ts = float(ts_us[0])
        self._last_ts = float(ts_us[-1])
        self._decisions += len(action)

    def _describe_access(self, key: tuple[Any, ...]) -> tuple[bytes, list[dict[str, Any]]]:
        """Canonical bytes and stored records of one access pattern."""
        per_symbol: dict[int, list[Any]] = {}
        for (di, field), lo, hi in key:
            entry = per_symbol.setdefault(di, [[], 0, 0])
            entry[0].append(field)
            entry[1] = max(entry[1], -lo)
            entry[2] = max(entry[2], hi)
        items = [
            (self._symbols[di], sorted(fields), int(back), int(ahead))
            for di, (fields, back, ahead) in sorted(per_symbol.items())
        ]
        records = [
            {"symbol": s, "fields": f, "lookback": b, "lookahead": a} for s, f, b, a in items
        ]
        return enc.access_part(items), records

    # ----------------------------------------------------------------- end
    def stop(self) -> None:
        self._flush()
        tail_log = self._log.take()
        self.close()
        self._background.finish()  # every batch stored; a writer failure surfaces here
        if self._writer is not None:
            self._writer.write_summary(self.summary(), tail_log)

    def close(self) -> None:
        """Restore stdout/stderr and unwrap; safe to call twice (runners call it on errors)."""
        if self._saved_streams is not None:
            sys.stdout, sys.stderr = self._saved_streams
            self._saved_streams = None
        for obj, name in getattr(self, "_guarded", ()):
            vars(obj).pop(name, None)  # back to the class's method
        self._guarded = []

    def _abandon(self) -> None:
        """The run failed: give the streams back, and store the decisions of every bar it
        finished, with their summary, so the record explains what led to the failure. A
        failure while storing is swallowed: it would only hide the run's own (and the run
        then has no summary: ``kept_after_failure`` stays False)."""
        self.close()
        background = getattr(self, "_background", None)
        if background is None:
            return
        with contextlib.suppress(Exception):
            whole = len(self._c_ind) == len(self._c_rows) * len(self._ind_lines)
            if whole:  # the failing bar itself has no row: its orders were never placed
                self._flush()
            background.finish()
            if whole and self._writer is not None:
                self._writer.write_summary(self.summary(), self._log.take())
                self.kept_after_failure = True

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "decisions": self._decisions,
            "actions": dict(self._counts),
            "first_bar_us": self._first_ts,
            "last_bar_us": self._last_ts,
            "chain_head": self._head,
            "genesis": self._genesis,
            "first_bar": self._first_bar,
        }

    def get_analysis(self) -> dict[str, Any]:
        out = self.summary()
        out["path"] = str(self._writer.run_dir) if self._writer is not None else None
        out["warnings"] = self._lookahead_warnings() + list(self.warnings)
        return out

    def _lookahead_warnings(self) -> list[str]:
        if not self._lookahead_bars:
            return []
        reads: dict[tuple[str, str], int] = {}
        for items in self._lookahead.values():
            for sym, field, ahead in items:
                reads[(sym, field)] = max(ahead, reads.get((sym, field), 0))
        what = ", ".join(
            f"{field} of {sym} {n} bar{'s' if n > 1 else ''} ahead"
            for (sym, field), n in sorted(reads.items())
        )
        return [
            f"{LOOKAHEAD_WARNING}the strategy read future bars on {self._lookahead_bars} of "
            f"{self._decisions} bars ({what}, e.g. close[1]); figures built on prices not yet "
            "known cannot be traded"
        ]


@dataclass(frozen=True, slots=True)
class _Batch:
    """The column buffers of one batch, as the strategy thread cut them."""

    first_bar: int
    rows: list[tuple[int, float, float, float, tuple[float, ...], int]]
    ind: list[float]
    orders: dict[int, list[tuple[Any, ...]]]
    fills: dict[int, list[tuple[Any, ...]]]
    logs: dict[int, list[str]]


class _Background:
    """One thread that stores batches in order. A failure there is raised on the
    strategy's thread at the next batch or at the end, never lost."""

    BACKLOG = 4  # batches waiting at most: beyond it the strategy thread waits (memory)

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fmel-writer")
        self._pending: deque[Future[None]] = deque()

    def submit(self, fn: Callable[[_Batch], None], batch: _Batch) -> None:
        pending = self._pending
        while pending and (pending[0].done() or len(pending) >= self.BACKLOG):
            pending.popleft().result()
        pending.append(self._pool.submit(fn, batch))

    def finish(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)


_RUN_LOOPS = ("_runonce", "_runnext", "_runonce_old", "_runnext_old")


def _closing_on_error(method: Any, close: Any) -> Any:
    def guarded(*args: Any) -> Any:
        try:
            return method(*args)
        except BaseException:
            close()
            raise

    return guarded


NAN = math.nan


def _value_or_nan(line: Any) -> float:
    try:
        return float(line.array[line.idx]) if line.idx >= 0 else NAN
    except (IndexError, TypeError, ValueError):
        return NAN


def _indicator_lines(strat: bt.Strategy) -> tuple[list[str], list[Any], list[str]]:
    """Names and lines of every line object the strategy created, and what was left out.

    ``getindicators()`` holds indicators (whose ``lines`` are a ``Lines`` object) and the
    line objects backtrader builds for expressions (``close > sma``, ``high(-1)``,
    ``bt.And(...)``, ``data0 / data1``), which are single line buffers themselves. Each is
    named after the strategy attribute holding it, else after what it is and its position
    (``gt_3``, ``delay_4``, ``sma_0``); a multi-line object adds its line aliases
    (``macd.signal``). Anything that is not made of readable line buffers is left out, and
    said once in the returned warnings.
    """
    named: dict[int, str] = {}
    for attr, value in vars(strat).items():
        if attr.startswith("_"):
            continue
        for suffix, obj in _members(value):
            if isinstance(obj, LineRoot):
                named.setdefault(id(obj), attr + suffix)
    names: list[str] = []
    lines: list[Any] = []
    left_out: list[str] = []
    taken: set[str] = set()
    for k, obj in enumerate(strat.getindicators()):
        base = named.get(id(obj)) or _anonymous_name(obj, k)
        members = _readable_lines(obj)
        if not members:
            left_out.append(base)
            continue
        for alias, line in members:
            name = base if len(members) == 1 else f"{base}.{alias}"
            if name in taken:  # an attribute called like another object's default name
                name = f"{name}~{k}"
            taken.add(name)
            names.append(name)
            lines.append(line)
    warnings = []
    if left_out:
        warnings.append(
            "FMEL does not record these line objects (they hold no readable line): "
            + ", ".join(left_out)
        )
    return names, lines, warnings


def _readable_lines(obj: Any) -> list[tuple[str, Any]]:
    """``(alias, line buffer)`` for each line of an indicator or line expression."""
    if isinstance(obj, LineSingle):  # a line expression is its own (only) line
        return [("", obj)] if _readable(obj) else []
    lines = getattr(obj, "lines", None)
    if not isinstance(lines, Lines):
        return []
    aliases = lines.getlinealiases() or ()
    out = []
    for li in range(lines.size()):
        line = lines[li]
        if _readable(line):
            out.append((aliases[li] if li < len(aliases) else str(li), line))
    return out


def _readable(line: Any) -> bool:
    return isinstance(line, LineBuffer) and hasattr(line, "array") and hasattr(line, "idx")


_DELAYS = {"_LineDelay": "delay", "_LineForward": "forward", "LinesCoupler": "coupled"}


def _anonymous_name(obj: Any, k: int) -> str:
    """What an object no attribute names is: ``gt_3`` for ``close > sma``, ``sma_0``."""
    kind = type(obj).__name__
    operation = getattr(obj, "operation", None) if kind.startswith("Line") else None
    if operation is not None:
        label = getattr(operation, "__name__", "op").strip("_")
    else:
        label = _DELAYS.get(kind, kind.lower().lstrip("_"))
    return f"{label}_{k}"


def _members(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [(f"[{k}]", v) for k, v in value.items() if isinstance(k, str | int)]
    if isinstance(value, list | tuple):
        return [(f"[{i}]", v) for i, v in enumerate(value)]
    return [("", value)]
