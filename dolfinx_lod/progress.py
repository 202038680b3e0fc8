"""Progress reports: a tqdm bar on a terminal, a few plain lines elsewhere (logs, pipes, CI).

Under ``mpirun`` or with the output redirected, a bar's carriage-return updates would fill the
log; :func:`progress` then prints one line per ~10 % of the work or per 30 s instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import Any, TextIO

from tqdm import tqdm

#: Plain progress lines: at most one per this fraction of the work or per this many seconds.
LINE_FRACTION, LINE_SECONDS = 0.1, 30.0


def interactive(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class PlainProgress:
    """Iterate over ``iterable`` and report "desc: k/total (p %) unit, t s" lines on ``stream``.

    A line is printed when 10 % of ``total`` items or 30 s have passed since the last one, and
    at the end; no carriage returns.
    """

    def __init__(
        self, iterable: Iterable[Any], total: int | None, desc: str, unit: str, stream: TextIO
    ):
        if total is None and isinstance(iterable, Sized):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.stream = stream

    def __iter__(self) -> Iterator[Any]:
        start = last_time = time.perf_counter()
        n = last_n = 0
        for item in self.iterable:
            yield item
            n += 1
            now = time.perf_counter()
            enough = self.total and n - last_n >= LINE_FRACTION * self.total
            if enough or now - last_time >= LINE_SECONDS or n == self.total:
                done = f"{n}/{self.total} ({100 * n / self.total:.0f} %)" if self.total else n
                print(f"{self.desc}: {done} {self.unit}, {now - start:.1f} s", file=self.stream)
                self.stream.flush()
                last_n, last_time = n, now


def progress(
    iterable: Iterable[Any],
    desc: str,
    unit: str = "it",
    show: bool = True,
    total: int | None = None,
    stream: TextIO | None = None,
) -> Iterable[Any]:
    """``iterable`` with a progress report: a tqdm bar if ``stream`` (default stderr) is a
    terminal, else :class:`PlainProgress` lines; ``iterable`` itself if not ``show``."""
    if not show:
        return iterable
    stream = sys.stderr if stream is None else stream
    if interactive(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream)
    return PlainProgress(iterable, total, desc, unit, stream)
