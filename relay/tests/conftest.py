from __future__ import annotations

import pytest

from relay.testing import delete_topics

from .relay_helpers import RelayProcess, create_relay_topics


@pytest.fixture(autouse=True)
def _no_relay_process_outlives_its_test():
    """A failed test must not leave a relay running (or paused) against the next tests'
    database and topics."""
    yield
    RelayProcess.kill_leftovers()


@pytest.fixture
def relay_topics(kafka_prefix):
    """The eight topics and the checkpoint topic under this test's prefix."""
    names = create_relay_topics()
    yield names
    delete_topics(names)
