"""What a job's end means for the jobs that wait on it (a judge waits on its two arms).

A dependent runs only once every upstream job has succeeded (the claim statement checks
it). An upstream that fails, diverges or is cancelled can never succeed, so its pending
dependents are cancelled with the reason, and theirs in turn: workers and the supervisor
then exit when nothing claimable is left. Each function runs inside the caller's
transaction (the queue's end of an attempt, or an operator's enqueue, cancel, retry).
"""

from __future__ import annotations

from collections.abc import Sequence

from jobs import queries, states


def cancel_dependents(conn, job_id: int, *, actor: str) -> list[int]:
    """Jobs waiting on ``job_id``, which will never succeed now, are cancelled (and
    theirs in turn). Retrying them later is the user's call."""
    cancelled: list[int] = []
    frontier = [job_id]
    while frontier:
        upstream = frontier.pop()
        for row in queries.blocked_dependents(conn, upstream):
            if queries.cancel(conn, job_id=row.id, from_state=states.PENDING):
                queries.insert_events(conn, [queries.event(row.id, states.PENDING, states.CANCELLED, row.attempts,
                                                           actor, f"dependency job {upstream} will not succeed")])
                cancelled.append(row.id)
                frontier.append(row.id)
    queries.write_curve_rollups(conn, cancelled)  # an earlier attempt may have logged points
    return cancelled


def cancel_doomed(conn, *, grid: int | None = None, job_ids: Sequence[int] | None = None, actor: str) -> list[int]:
    """Pending jobs (of ``grid`` or among ``job_ids``) whose upstream already failed, diverged or
    was cancelled can never run: cancel them (and their dependents) with the reason."""
    cancelled: list[int] = []
    for row in queries.doomed_dependents(conn, grid=grid, job_ids=job_ids):
        if queries.cancel(conn, job_id=row.id, from_state=states.PENDING):
            queries.insert_events(conn, [queries.event(row.id, states.PENDING, states.CANCELLED, row.attempts, actor,
                                                       f"dependency job {row.upstream} will not succeed")])
            cancelled.append(row.id)
            cancelled.extend(cancel_dependents(conn, row.id, actor=actor))
    return cancelled
