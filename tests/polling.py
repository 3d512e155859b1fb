"""The one way tests wait: poll for an observable condition until a deadline, never sleep and hope.

The deadline is a bound for failing, not a timing threshold: a passing test returns as soon as the
condition holds, and a failing one names what it waited for and what it saw last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    accept: Callable[[T], object] = bool,
    deadline_s: float = 20.0,
    what: str = "condition",
    *,
    interval_s: float = 0.05,
) -> T:
    """Re-run `check` until `accept(result)` is true (by default: the result is truthy); return that result.

    Raises AssertionError naming `what` and the last observation when `deadline_s` passes first.
    """
    end = time.monotonic() + deadline_s
    last = check()
    while not accept(last):
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached within {deadline_s:.0f} s; last observation: {last!r}")
        time.sleep(interval_s)
        last = check()
    return last
