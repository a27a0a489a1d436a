"""torch's CPU thread count is process-wide state: the one place the harness sets it (training, the hf backend)."""
from __future__ import annotations

from typing import Callable


def set_torch_threads(threads: int | None, default: Callable[[], int]) -> int:
    """Set torch's intra-op threads to `threads`, or to `default()` when it is unset or 0; returns the count."""
    import torch

    n = int(threads or 0) or default()
    torch.set_num_threads(n)
    return n
