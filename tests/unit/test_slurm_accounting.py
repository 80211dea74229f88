"""Reading sacct (slurm.accounting): one row per start, array ranges, failure classes.
Through the sacct command line, on a fake Slurm and on the real one, and reconcile on top of it:
test_reconcile.py and tests/slurm/test_accounting_contract.py."""

from __future__ import annotations

import pytest

from jobs import states
from slurm import accounting

pytestmark = pytest.mark.unit

SACCT = """\
15|NODE_FAIL|vm|2026-11-23T00:48:07|2026-11-23T00:48:13|None
14|CANCELLED by 0|vm|2026-11-23T00:48:04|2026-11-23T00:48:07|None
15|RUNNING|vm|2026-11-23T00:48:36|Unknown|None
17_[2-3%2]|PENDING|None assigned|Unknown|Unknown|JobArrayTaskLimit
17_0|RUNNING|vm|2026-11-23T00:50:00|Unknown|None
"""


def test_runs_per_start_oldest_first_with_pending_array_ranges_expanded():
    runs = accounting.parse_runs(SACCT)
    assert [r.state for r in runs["15"]] == ["NODE_FAIL", "RUNNING"]
    assert runs["14"][0].state == "CANCELLED" and runs["14"][0].end == "2026-11-23T00:48:07"
    assert runs["17_2"][0].state == "PENDING" and runs["17_3"][0].reason == "JobArrayTaskLimit"
    assert runs["17_2"][0].node is None
    latest = accounting.current(runs)
    assert latest["15"].active and not latest["14"].active


@pytest.mark.parametrize("state, outcome", [
    ("PREEMPTED", states.OUTCOME_PREEMPTED), ("REQUEUED", states.OUTCOME_PREEMPTED), ("TIMEOUT", states.OUTCOME_TIMEOUT),
    ("NODE_FAIL", states.OUTCOME_NODE_FAIL), ("OUT_OF_MEMORY", states.OUTCOME_OOM),
    ("CANCELLED by 0", states.OUTCOME_CANCELLED), ("FAILED", states.OUTCOME_ERROR), ("COMPLETED", states.OUTCOME_ERROR),
])
def test_failure_classes(state, outcome):
    assert accounting.outcome_of(state) == outcome
