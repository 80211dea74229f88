"""Reading a job's figures back from the database in tests."""

from __future__ import annotations


def metrics_of(queue, job_id: int, name: str | None = None):
    from db.session import scope
    from jobs import queries

    with scope(queue.engine, write=False) as conn:
        return queries.job_metrics(conn, job_id, name)


def summaries_of(queue, job_id: int) -> dict[str, float]:
    from db.session import scope
    from jobs import queries

    with scope(queue.engine, write=False) as conn:
        return queries.job_summaries(conn, job_id)
