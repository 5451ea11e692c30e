"""`scripts/services up postgres` from a checkout the postgres user cannot enter (a clone under
/root, a folder made by `mktemp -d`): PostgreSQL runs as `postgres`, never as root, so the
script keeps the cluster and its log where that user can reach them and says why. Run on a
private port and folder; the shared PostgreSQL is not touched."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def _services(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "scripts" / "services"), *args], env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user; "
                    "CI and these machines run as root")
def test_up_postgres_from_a_checkout_the_postgres_user_cannot_enter():
    # given: a checkout inside a folder made like `mktemp -d` (mode 0700, root's)
    private = Path(tempfile.mkdtemp(prefix="showoff-private-"))
    assert private.stat().st_mode & 0o777 == 0o700
    local = private / "checkout" / ".local"
    port = free_port()
    env = {**os.environ, "SHOWOFF_LOCAL_DIR": str(local), "SHOWOFF_PG_PORT": str(port),
           "SHOWOFF_SERVICES_TIMEOUT": "60"}
    relocated = None
    try:
        # when
        up = _services("up", "postgres", env=env)
        found = re.search(r"its data and log live in (/var/tmp/showoff-pg-[0-9a-f]+)\.",
                          up.stdout)
        relocated = Path(found.group(1)) if found else None
        # then: it starts, and says where the data went and how to keep it in the checkout
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"{local} is not reachable by the postgres user" in up.stdout
        assert "chmod o+x" in up.stdout and "SHOWOFF_LOCAL_DIR" in up.stdout
        assert f"postgres: up on 127.0.0.1:{port}" in up.stdout
        assert relocated is not None and (relocated / "data" / "PG_VERSION").exists()
        assert (relocated / "postgres.log").stat().st_size > 0
        status = _services("status", env=env).stdout
        assert f"postgres  up        127.0.0.1:{port}" in status
        assert str(relocated / "postgres.log") in status
        # and a second `up` finds it running
        again = _services("up", "postgres", env=env)
        assert again.returncode == 0 and "postgres: already running" in again.stdout
    finally:
        down = _services("down", "postgres", env=env)
        assert "postgres: stopped" in down.stdout, down.stdout + down.stderr
        shutil.rmtree(private, ignore_errors=True)
        if relocated is not None:
            shutil.rmtree(relocated, ignore_errors=True)
