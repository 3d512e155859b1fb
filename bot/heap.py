"""Keep Python's garbage collector out of a long-running process's answers.

A full (generation 2) collection walks every container object the process holds. In `kubereach
serve` most of those are built once at start-up — the imported modules of Slack, gRPC, SQLAlchemy and
the kubernetes client, the app, the compiled statements — and never become garbage, yet each full
collection walks them again, on whichever request thread happens to allocate at that moment:
measured in ``bench/bench_history.py``, pauses of 50-60 ms inside single history searches whose SQL
took 1-12 ms. `settle_heap` collects once and then freezes what is left (``gc.freeze``, the
permanent generation), so later collections walk only what was built after start-up.
"""

from __future__ import annotations

import gc


def settle_heap() -> int:
    """Collect the start-up garbage, then move every surviving object out of the collector's walks.

    Call it once, when start-up is over and before the first request; returns how many objects were
    frozen. Frozen objects are still freed by reference counting; only cycles among them are never
    collected, and start-up leaves none behind once `gc.collect` has run.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
