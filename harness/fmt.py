"""Numbers as text, one way everywhere: the decision's sentences, the report and the gate print a number, an
interval and a comparison with these helpers, so the same statistic reads the same in every output. Pure text
formatting: no statistics, no I/O."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.analysis import Comparison, Interval


def fmt_num(x: float | None, spec: str = ".3f") -> str:
    """A number, or "n/a" for a missing (None or NaN) one."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def fmt_interval(i: Interval | None) -> str:
    if i is None or math.isnan(i.mean):
        return "n/a"
    return f"{i.mean:.3f} [{i.lo:.3f}, {i.hi:.3f}]"


def fmt_comparison(c: Comparison) -> str:
    """One comparison as the report, the gate and the decision all print it."""
    p = f"p {'< 0.001' if c.p < 0.001 else f'= {c.p:.3f}'}" + (f" (Holm over {c.adjusted_over})" if c.p_adjusted is not None else "")
    counts = f", {c.a_only} vs {c.b_only} items" if c.a_only is not None else ""
    return f"{c.diff:+.3f} [{c.lo:+.3f}, {c.hi:+.3f}], {p}, n = {c.n}{counts}"


def clip_line(text: object, n: int) -> str:
    """One line of at most n characters: an example (a model's output) must not swamp the sentence or table
    that quotes it. Used by the headline and by the report's examples."""
    t = " ".join(str(text or "").split())
    return t if len(t) <= n else t[: n - 1] + "…"
