"""A private Prometheus for tests: Debian's `prometheus` started by `scripts/services up
prometheus` itself (so the script is what is tested), on a free port, with its own data folder
and a Procfile naming the test's processes, scraping every second."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePrometheus:
    def __init__(self, folder: Path, procfile: str, *, interval: str = "1s"):
        if not shutil.which("prometheus"):
            pytest.fail("prometheus is not installed: run `scripts/install-test-deps` (apt-get "
                        "install -y prometheus, as root) first.")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.local = folder / "local"
        self.procfile = folder / "Procfile"
        self.procfile.write_text(procfile)
        self.env = {**os.environ, "SHOWOFF_LOCAL_DIR": str(self.local),
                    "SHOWOFF_PROMETHEUS_PORT": str(self.port),
                    "SHOWOFF_PROMETHEUS_SCRAPE_INTERVAL": interval,
                    "SHOWOFF_PROCFILE": str(self.procfile)}

    def services(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "scripts/services", *args], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=120)

    def start(self) -> PrivatePrometheus:
        result = self.services("up", "prometheus")
        assert result.returncode == 0, result.stdout + result.stderr
        return self

    def stop(self) -> None:
        self.services("down", "prometheus")

    def query(self, expr: str) -> list[dict]:
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, predicate, timeout: float = 60) -> float:
        """Wait until the instant query's (first) value satisfies `predicate`; returns it."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last is not None and predicate(last):
                return last
            time.sleep(0.25)
        raise AssertionError(f"Prometheus never showed the expected {expr} (last: {last}); "
                             f"targets: {self.targets()}")

    def targets(self) -> list[tuple[str, str, str]]:
        data = requests.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]
        return [(t["labels"]["job"], t["scrapeUrl"], t["health"] + " " + t["lastError"])
                for t in data["activeTargets"]]
