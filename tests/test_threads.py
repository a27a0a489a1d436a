"""harness.threads.set_torch_threads: the one place torch's process-wide CPU thread count is set."""
from __future__ import annotations

import torch

from harness.threads import set_torch_threads


def test_an_explicit_count_is_used_and_the_default_is_not_asked():
    before = torch.get_num_threads()
    try:
        assert set_torch_threads(1, lambda: 1 / 0) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_unset_or_zero_takes_the_default():
    before = torch.get_num_threads()
    try:
        assert set_torch_threads(None, lambda: 1) == 1 and set_torch_threads(0, lambda: 1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
