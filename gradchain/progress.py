"""Progress of long work (block sync, a testnet's start, training): a bar on a terminal,
plain lines anywhere else.  Every command and script that shows progress uses this module.

On a terminal, a tqdm bar is redrawn in place, with the rate and the estimated time left;
while it is open, log records go through `tqdm.write` so that log lines do not tear it.
Anywhere else (a pipe, a log file, a test's capture, a callable that takes lines) progress
is a plain line each time `every_pct` more percent is done or `every_s` seconds have passed,
whichever comes first, and one at the end: never a line per item, never a carriage return
or an escape code.  Progress only reads the work it shows; it feeds nothing back into it.
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import ExitStack
from typing import Any, Callable, TextIO, Union

# where progress goes: a stream (a bar if it is a terminal, else lines), a callable taking
# one line at a time, or None (nothing)
Out = Union[TextIO, Callable[[str], None], None]

EVERY_PCT = 10.0  # plain lines: one per this many percent done...
EVERY_S = 5.0     # ... or after this many seconds, whichever comes first


def is_terminal(out: Out) -> bool:
    """Whether `out` is a stream attached to a terminal (where a bar may be drawn)."""
    isatty = getattr(out, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed stream
        return False


def _columns(out: Out) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 0


def _rate_text(rate: float, unit: str) -> str:
    if rate >= 10:
        return f"{rate:,.0f} {unit}s/s"
    return f"{rate:.2g} {unit}s/s" if rate >= 0.1 else f"{1 / rate:.2g} s/{unit}" if rate > 0 else ""


def line_text(label: str, unit: str, done: int, total: int | None, info: dict[str, Any], rate: float) -> str:
    """One plain progress line: `sync: block 120/500 (24%), 410 blocks/s`."""
    text = f"{label}: {unit} {done}" + (f"/{total} ({100 * done / total:.0f}%)" if total else "")
    parts = [f"{k} {v}" for k, v in info.items()] + ([_rate_text(rate, unit)] if rate > 0 else [])
    return text + "".join(f", {p}" for p in parts if p)


class Progress:
    """How far one long task is: `update(done)` as it goes, `close()` at the end (or use it as
    a context manager).  `done` is absolute (0..total), `total` may grow (a sync's target) or
    be None (unknown); `info` items (a loss, a height) are shown beside the count.  The rate
    counts from `initial` at `started` (time.monotonic(); default now); `rate=False` shows none."""

    def __init__(self, label: str, total: int | None, unit: str, out: Out, initial: int = 0,
                 every_pct: float = EVERY_PCT, every_s: float = EVERY_S, started: float | None = None,
                 rate: bool = True):
        self.label, self.total, self.unit, self.out = label, total, unit, out
        self.done, self.initial, self.info = initial, initial, {}
        self.every_pct, self.every_s = every_pct, every_s
        self.show_rate = rate  # False: counts that are not a throughput (validators ready)
        self.started = time.monotonic() if started is None else started  # when `initial` was done
        self._shown: tuple[int, float] | None = None  # (done, when) of the last plain line
        self._bar: Any = None
        self._said: dict[str, Any] = {}  # the info of the last plain line
        self._stack = ExitStack()
        self.closed = False
        if is_terminal(out):
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm
            sized = _columns(out) > 0  # a terminal that says its width (a bare pty says 0: tqdm would draw nothing)
            fmt = {} if rate else {"bar_format": "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"}
            self._bar = tqdm(total=total, initial=initial, desc=label, unit=unit, file=out, dynamic_ncols=sized, **fmt,
                             ncols=None if sized else 80, nrows=None if sized else 24, mininterval=0.1, leave=True)
            self._stack.enter_context(logging_redirect_tqdm([logging.getLogger()], tqdm_class=tqdm))

    @property
    def rate(self) -> float:
        """Items per second since the start (0 before any)."""
        elapsed = time.monotonic() - self.started
        return (self.done - self.initial) / elapsed if elapsed > 0 and self.done > self.initial else 0.0

    def update(self, done: int, total: int | None = None, **info: Any) -> None:
        if self.closed:
            return
        if total is not None and total != self.total:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
        self.info.update(info)
        step = done - self.done
        self.done = done
        if self._bar is not None:
            if info:
                self._bar.set_postfix(self.info, refresh=False)
            if step:
                self._bar.update(step)  # redraws at most every mininterval
            elif info:
                self._bar.refresh()
        elif self.out is not None:
            self._maybe_line()

    def _maybe_line(self) -> None:
        now = time.monotonic()
        if self._shown is None:
            due = True
        else:
            last, when = self._shown
            pct = 100 * (self.done - last) / self.total if self.total else 0.0
            due = self.done != last and (pct >= self.every_pct or now - when >= self.every_s)
        if due:
            self._line()
            self._shown = (self.done, now)

    def _line(self) -> None:
        self._said = dict(self.info)
        self._emit(line_text(self.label, self.unit, self.done, self.total, self.info,
                             self.rate if self.show_rate else 0.0))

    def _emit(self, text: str) -> None:
        write = getattr(self.out, "write", None)
        if write is not None:
            write(text + "\n")
            self.out.flush()  # type: ignore[union-attr]
        elif self.out is not None:
            self.out(text)

    def write(self, text: str) -> None:
        """A message line beside the progress (above the bar on a terminal)."""
        if self._bar is not None:
            self._bar.write(text, file=self.out)
        else:
            self._emit(text)

    def close(self, **info: Any) -> None:
        """The end: the bar drawn a last time, or a last plain line unless the last one said it all."""
        if self.closed:
            return
        self.info.update(info)
        if self._bar is not None:
            if self.info:
                self._bar.set_postfix(self.info, refresh=False)
            self._bar.close()
        elif self.out is not None and (self._shown is None or self._shown[0] != self.done or self.info != self._said):
            self._line()
        self.closed = True
        self._stack.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
