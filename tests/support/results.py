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


def run_dir(queue, runs_dir, job_id: int):
    """Job ``job_id``'s run folder under ``runs_dir`` (jobs.runs names it by the database's id,
    the grid and the spec hash)."""
    from jobs import reports, runs

    job = reports.job(queue.engine, job_id)
    return runs.path_for(runs_dir, database_id=queue.database_id(), grid=queue.grid_name(job.grid_id),
                         job_id=job_id, spec_hash=job.spec_hash)
