from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """Throttle counters live in the (local memory) cache: no test inherits another's."""
    cache.clear()
    yield
    cache.clear()
