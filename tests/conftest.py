"""Shared pytest fixtures."""
from __future__ import annotations

from typing import Iterator

import pytest
import torch

import gbench.plugins

# The tests train tiny nets: one thread is faster, and immune to a busy machine's oversubscription.
torch.set_num_threads(1)

# -- plugins ---------------------------------------------------------------------------------


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    """Forget the process-wide plugin set before and after a test that changes what is installed.

    Use it in any test that adds plugins to ``sys.path`` (fake distributions, ``pip --target``) so
    ``gbench.get_plugins()`` neither sees a stale set inside the test nor leaks the test's set.
    """
    gbench.plugins.reset_plugins()
    yield
    gbench.plugins.reset_plugins()
