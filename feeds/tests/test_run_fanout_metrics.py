"""`run_fanout --metrics-port`: the fan-out worker answers Prometheus (its `up` and process
metrics), so the ShowoffProcessDown alert covers it like every other process."""

from __future__ import annotations

import time
import urllib.request

import pytest

from relay.testing import ManageProcess
from relay.tests.prometheus_support import free_port


@pytest.mark.django_db(transaction=True)
def test_run_fanout_serves_its_metrics_on_a_port(tmp_path):
    port = free_port()
    worker = ManageProcess(["run_fanout", "--metrics-port", str(port)], log_dir=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                break
            except OSError:
                assert worker.proc.poll() is None, worker.output()
                assert time.monotonic() < deadline, worker.output()
                time.sleep(0.2)
        assert "process_start_time_seconds " in text
    finally:
        assert worker.terminate() == 0, worker.output()
