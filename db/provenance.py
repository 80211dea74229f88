"""Reading provenance back: what produced a job's results, and whether pooled results
ran different programs ("drift").

Both the CLI (``gridlab show``, ``results``, ``compare``) and the dashboard (run detail,
Results page) read provenance through this module, so they say the same thing. The
rows are written by the queue (jobs.queries: ``provenance_id``, ``grid_version``);
everything here only reads, and hands back frozen records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from db.models import attempts, code_versions, environments, grid_versions, jobs, machines, provenances

#: Environment entries that drift warnings name (the rest are compared through the freeze).
KEY_ORDER = ("python", "torch", "torch_cuda", "transformers", "peft", "datasets", "lm-eval", "llm-blender",
             "accelerate", "numpy", "gridlab")


def code_label(git_commit: str | None, git_dirty: bool | None, diff_hash: str | None, files_hash: str) -> str:
    """A code version in short: ``a1b2c3d4``, ``a1b2c3d4+dirty:5e6f70``, or ``files:9a8b7c6d``
    without git (the one spelling of jobs.provenance.Code and the rows read back)."""
    if git_commit is None:
        return f"files:{files_hash[:8]}"
    if git_dirty:
        return f"{git_commit[:8]}+dirty:{(diff_hash or files_hash)[:6]}"
    return git_commit[:8]


@dataclass(frozen=True)
class CodeInfo:
    id: int
    files_hash: str
    files: int
    git_commit: str | None
    git_dirty: bool | None
    diff_hash: str | None

    @property
    def label(self) -> str:
        """Short: ``a1b2c3d4``, ``a1b2c3d4+dirty:5e6f70``, or ``files:9a8b7c6d`` without git."""
        return code_label(self.git_commit, self.git_dirty, self.diff_hash, self.files_hash)


@dataclass(frozen=True)
class EnvironmentInfo:
    id: int
    python: str
    packages: dict[str, Any]

    def versions(self) -> dict[str, Any]:
        return {"python": self.python, **self.packages}


@dataclass(frozen=True)
class MachineInfo:
    id: int
    host: str
    platform: str
    cpu_count: int
    gpu_count: int
    gpu_name: str | None
    gpu_driver: str | None
    cuda_driver: str | None

    @property
    def gpus(self) -> str:
        return f"{self.gpu_count} x {self.gpu_name}" if self.gpu_count else "none"


@dataclass(frozen=True)
class AttemptProvenance:
    number: int
    outcome: str | None
    slurm_job_id: str | None
    node: str | None
    code: CodeInfo | None  # None: the attempt ran before provenance was recorded
    environment: EnvironmentInfo | None
    machine: MachineInfo | None
    code_root: str | None
    pinned: bool | None


@dataclass(frozen=True)
class GridVersionInfo:
    id: int
    number: int
    of: int  # how many versions the grid has
    text_hash: str
    source_path: str | None
    created_at: float


@dataclass(frozen=True)
class JobProvenance:
    job_id: int
    grid_version: GridVersionInfo | None
    attempts: tuple[AttemptProvenance, ...]


def _code(row) -> CodeInfo:
    return CodeInfo(id=row.code_id, files_hash=row.files_hash, files=row.files, git_commit=row.git_commit,
                    git_dirty=row.git_dirty, diff_hash=row.diff_hash)


def _environment(row) -> EnvironmentInfo:
    return EnvironmentInfo(id=row.environment_id, python=row.python, packages=dict(row.packages or {}))


def _provenance_select():
    p, c, e, m = provenances, code_versions, environments, machines
    return (
        select(attempts.c.job_id, attempts.c.number, attempts.c.outcome, attempts.c.slurm_job_id, attempts.c.node,
               p.c.code_root, p.c.pinned, p.c.code_id, p.c.environment_id, p.c.machine_id,
               c.c.files_hash, c.c.files, c.c.git_commit, c.c.git_dirty, c.c.diff_hash,
               e.c.python, e.c.packages,
               m.c.host, m.c.platform, m.c.cpu_count, m.c.gpu_count, m.c.gpu_name, m.c.gpu_driver, m.c.cuda_driver)
        .select_from(attempts)
        .outerjoin(p, p.c.id == attempts.c.provenance_id)
        .outerjoin(c, c.c.id == p.c.code_id)
        .outerjoin(e, e.c.id == p.c.environment_id)
        .outerjoin(m, m.c.id == p.c.machine_id)
    )


def job_provenance(conn: Connection, job_id: int) -> JobProvenance:
    """A job's grid file version and, per attempt, its code, environment and machine."""
    rows = conn.execute(_provenance_select().where(attempts.c.job_id == int(job_id)).order_by(attempts.c.number)).all()
    out = []
    for r in rows:
        known = r.code_id is not None
        out.append(AttemptProvenance(
            number=r.number, outcome=r.outcome, slurm_job_id=r.slurm_job_id, node=r.node,
            code=_code(r) if known else None, environment=_environment(r) if known else None,
            machine=MachineInfo(id=r.machine_id, host=r.host, platform=r.platform, cpu_count=r.cpu_count,
                                gpu_count=r.gpu_count, gpu_name=r.gpu_name, gpu_driver=r.gpu_driver,
                                cuda_driver=r.cuda_driver) if known else None,
            code_root=r.code_root, pinned=r.pinned))
    return JobProvenance(job_id=int(job_id), grid_version=_grid_version(conn, job_id), attempts=tuple(out))


def _grid_version(conn: Connection, job_id: int) -> GridVersionInfo | None:
    v = grid_versions
    row = conn.execute(select(v.c.id, v.c.grid_id, v.c.number, v.c.text_hash, v.c.source_path, v.c.created_at)
                       .join(jobs, jobs.c.grid_version_id == v.c.id).where(jobs.c.id == int(job_id))).first()
    if row is None:
        return None
    count = conn.execute(select(func.count()).where(v.c.grid_id == row.grid_id)).scalar_one()
    return GridVersionInfo(id=row.id, number=row.number, of=count, text_hash=row.text_hash,
                           source_path=row.source_path, created_at=row.created_at)


def grid_text(conn: Connection, job_id: int) -> str | None:
    """The grid file text whose enqueue created the job (None if not recorded)."""
    return conn.execute(select(grid_versions.c.source_text).join(jobs, jobs.c.grid_version_id == grid_versions.c.id)
                        .where(jobs.c.id == int(job_id))).scalar()


def code_diff(conn: Connection, job_id: int, attempt: int | None = None) -> str | None:
    """The uncommitted changes the job's newest attempt (or ``attempt``) ran with ('' for a
    clean tree, None when not recorded or without git)."""
    row = _attempt_row(conn, job_id, attempt, code_versions.c.diff, code_versions.c.git_dirty,
                       code_versions.c.git_commit)
    if row is None or row.git_commit is None:
        return None
    return row.diff if row.git_dirty else ""


def freeze(conn: Connection, job_id: int, attempt: int | None = None) -> str | None:
    """Every distribution installed where the job's newest attempt (or ``attempt``) ran."""
    row = _attempt_row(conn, job_id, attempt, environments.c.freeze)
    return None if row is None else row.freeze


def _attempt_row(conn: Connection, job_id: int, attempt: int | None, *columns):
    stmt = (select(*columns).select_from(attempts)
            .join(provenances, provenances.c.id == attempts.c.provenance_id)
            .join(code_versions, code_versions.c.id == provenances.c.code_id)
            .join(environments, environments.c.id == provenances.c.environment_id)
            .where(attempts.c.job_id == int(job_id)))
    if attempt is not None:
        stmt = stmt.where(attempts.c.number == int(attempt))
    return conn.execute(stmt.order_by(attempts.c.number.desc()).limit(1)).first()


# --- drift: pooled results that ran different programs ------------------------------------


@dataclass(frozen=True)
class Drift:
    """What the attempts of a set of jobs ran under. ``code_of`` / ``environment_of``: each
    job's label (several joined by ``+`` when its attempts differ); jobs without any
    recorded provenance are in ``unknown``."""

    codes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # code label -> job ids
    environments: dict[str, tuple[int, ...]] = field(default_factory=dict)  # environment label -> job ids
    code_of: dict[int, str] = field(default_factory=dict)
    environment_of: dict[int, str] = field(default_factory=dict)
    unknown: tuple[int, ...] = ()

    @property
    def code_drift(self) -> bool:
        return len(self.codes) > 1

    @property
    def environment_drift(self) -> bool:
        return len(self.environments) > 1

    @property
    def partly_unknown(self) -> bool:
        """Some jobs have recorded provenance and some do not: they may differ unseen."""
        return bool(self.unknown) and bool(self.code_of)

    @property
    def any(self) -> bool:
        return self.code_drift or self.environment_drift or self.partly_unknown

    def columns(self) -> dict[str, dict[int, str]]:
        """The columns to add to a table of these jobs (job id -> label): code and/or env,
        where the pooled jobs differ."""
        out = {}
        if self.code_drift:
            out["code"] = self.code_of
        if self.environment_drift:
            out["env"] = self.environment_of
        return out

    def warning(self) -> str | None:
        """One line naming what differs and which jobs ran which, or None if nothing does."""
        parts = []
        if self.code_drift:
            parts.append(f"{len(self.codes)} code versions (" + "; ".join(
                f"{label}: {_ids(ids)}" for label, ids in self.codes.items()) + ")")
        if self.environment_drift:
            parts.append(f"{len(self.environments)} environments (" + "; ".join(
                f"{label}: {_ids(ids)}" for label, ids in self.environments.items()) + ")")
        unknown = (f"{_ids(self.unknown)} ran with no recorded provenance (before gridlab recorded it)"
                   if self.partly_unknown else None)
        if not parts and unknown is None:
            return None
        if not parts:
            return f"{unknown}, the other {len(self.code_of)} under one code and environment; compare with care"
        jobs_n = len(self.code_of)
        return (f"these {jobs_n} jobs ran under " + " and ".join(parts) + (f"; {unknown}" if unknown else "")
                + "; compare with care, and see `gridlab show JOB` for what each ran")


def drift(conn: Connection, job_ids: Iterable[int]) -> Drift:
    """What the attempts of ``job_ids`` ran under, and where they differ."""
    ids = sorted({int(i) for i in job_ids})
    rows = []
    for start in range(0, len(ids), 5000):  # under every backend's bound-parameter limit
        part = ids[start:start + 5000]
        rows += conn.execute(_provenance_select().where(attempts.c.job_id.in_(part))
                             .order_by(attempts.c.job_id, attempts.c.number)).all()
    codes: dict[int, CodeInfo] = {}
    envs: dict[int, EnvironmentInfo] = {}
    per_job_code: dict[int, list[int]] = {}
    per_job_env: dict[int, list[int]] = {}
    for r in rows:
        if r.code_id is None:
            continue
        codes.setdefault(r.code_id, _code(r))
        envs.setdefault(r.environment_id, _environment(r))
        for store, key in ((per_job_code, r.code_id), (per_job_env, r.environment_id)):
            seen = store.setdefault(r.job_id, [])
            if key not in seen:
                seen.append(key)
    env_labels = _environment_labels(conn, envs)
    code_labels = _unique_labels({i: c.label for i, c in codes.items()})
    code_of = {j: "+".join(code_labels[c] for c in cs) for j, cs in per_job_code.items()}
    environment_of = {j: "+".join(env_labels[e] for e in es) for j, es in per_job_env.items()}
    return Drift(codes=_group(code_of), environments=_group(environment_of), code_of=code_of,
                 environment_of=environment_of, unknown=tuple(j for j in ids if j not in per_job_code))


def _group(of: dict[int, str]) -> dict[str, tuple[int, ...]]:
    out: dict[str, list[int]] = {}
    for job_id, label in sorted(of.items()):
        out.setdefault(label, []).append(job_id)
    return {label: tuple(ids) for label, ids in out.items()}


def _unique_labels(labels: dict[int, str]) -> dict[int, str]:
    """Labels made distinct where two rows share one (same commit, different files)."""
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {i: (label if counts[label] == 1 else f"{label}#{i}") for i, label in labels.items()}


def _environment_labels(conn: Connection, envs: dict[int, EnvironmentInfo]) -> dict[int, str]:
    """Each environment named by the versions that differ between them (``torch 2.4.0``);
    where only packages outside the key list differ, by those (from their freezes)."""
    if len(envs) <= 1:
        return {i: f"env {i}" for i in envs}
    versions = {i: e.versions() for i, e in envs.items()}
    keys = [k for k in KEY_ORDER if len({str(v.get(k)) for v in versions.values()}) > 1]
    if keys:
        labels = {i: ", ".join(f"{k} {v.get(k)}" for k in keys) for i, v in versions.items()}
    else:
        frozen = dict(conn.execute(select(environments.c.id, environments.c.freeze)
                                   .where(environments.c.id.in_(list(envs)))).all())
        parsed = {i: dict(line.split("==", 1) for line in (frozen.get(i) or "").splitlines() if "==" in line)
                  for i in envs}
        names = sorted({n for p in parsed.values() for n in p}, key=str.lower)
        differing = [n for n in names if len({p.get(n) for p in parsed.values()}) > 1][:3]
        labels = {i: ", ".join(f"{n} {parsed[i].get(n, '(none)')}" for n in differing) or f"env {i}" for i in envs}
    return _unique_labels(labels)


def _ids(ids: Sequence[int]) -> str:
    """``jobs 1-3, 7`` (runs of consecutive ids collapsed; more than 8 runs are counted)."""
    runs: list[tuple[int, int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    shown = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:8]]
    more = f" and {sum(b - a + 1 for a, b in runs[8:])} more" if len(runs) > 8 else ""
    word = "job" if len(ids) == 1 else "jobs"
    return f"{word} {', '.join(shown)}{more}"
