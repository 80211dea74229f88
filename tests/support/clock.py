"""Moving the queue's clock forward in a test, instead of waiting for it.

Leases and backoff are judged by the database's clock (db/clock.py), so a test cannot hand
the queue a fake ``now``. It can do the next best thing: move every deadline the queue keeps
(a lease's expiry, a backoff's ``not_before``, the last heartbeat) back by ``seconds``, which
is what ``seconds`` of waiting would have done, and the claim, reaper and backoff statements
then run unchanged against the real clock.
"""

from __future__ import annotations

from sqlalchemy import update

from db.models import jobs
from db.session import scope


def advance(engine, seconds: float) -> None:
    """As if ``seconds`` had passed for every job's lease, heartbeat and backoff."""
    with scope(engine) as conn:
        conn.execute(update(jobs).values(
            lease_expires_at=jobs.c.lease_expires_at - seconds,
            heartbeat_at=jobs.c.heartbeat_at - seconds,
            not_before=jobs.c.not_before - seconds,
        ))
