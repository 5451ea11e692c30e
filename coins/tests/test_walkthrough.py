"""docs/api-coins.md's walkthrough, run verbatim: from `make run` to a bought, transferred and
withdrawn coin with curl, jq and openssl against the web process as `make run` starts it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from coins.models import PurchaseOrder, Transfer, Wallet, Withdrawal
from coins.selectors import ledger_verify
from showoff.tests.servers import app_env, web_server

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def walkthrough_blocks() -> list[str]:
    text = (ROOT / "docs" / "api-coins.md").read_text()
    section = text.split("## From `make run` to a withdrawn coin", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def test_the_coins_walkthrough_runs_as_written(tmp_path):
    # given: what `make run` does before it starts the web process (the Makefile's run recipe
    # runs coins_dev_setup; coins/tests/test_dev_setup.py checks it does)
    blocks = walkthrough_blocks()
    assert len(blocks) == 6
    env = app_env("make-run", media_dir=tmp_path)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # the virtualenv's python
    setup = subprocess.run([sys.executable, "manage.py", "coins_dev_setup"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert "added the package 'Demo pack'" in setup.stdout, setup.stdout + setup.stderr
    script = tmp_path / "walkthrough.sh"
    script.write_text("\n".join(blocks))
    # when: the blocks, one after the other, in one shell, as a reader pastes them
    with web_server("make-run", media_dir=tmp_path) as base:
        run = subprocess.run(["bash", "-euo", "pipefail", str(script)], cwd=ROOT,
                             env={**env, "API": base}, capture_output=True, text=True,
                             timeout=300)
    # then
    assert run.returncode == 0, run.stdout + run.stderr
    assert '{"result":"credited"}' in run.stdout
    order = PurchaseOrder.objects.get()
    assert (order.status, order.coins, order.user.username) == ("completed", 2000, "ana")
    transfer = Transfer.objects.get()
    assert (transfer.sender.username, transfer.recipient.username, transfer.amount) == (
        "ana", "bob", 150)
    withdrawal = Withdrawal.objects.get()
    assert (withdrawal.status, withdrawal.amount, withdrawal.reviewed_by.username) == (
        "completed", 1000, "ops")
    balances = dict(Wallet.objects.filter(user__isnull=False)
                    .values_list("user__username", "balance"))
    assert balances == {"ana": 2000 - 150 - 1000, "bob": 150}
    assert '"status": "completed"' in run.stdout
    assert ledger_verify().ok
