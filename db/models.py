"""The results database's tables, as SQLAlchemy 2.x typed models.

Times are seconds since the Unix epoch (floats), taken from the *database's* clock
(see :mod:`db.clock`) wherever they decide something (leases, backoff), so workers
on machines with skewed clocks agree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# A naming convention keeps constraint names identical on every backend, so
# Alembic's autogenerate sees no spurious differences.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid; BIGINT there would
# not autoincrement. Big on PostgreSQL, rowid on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, float: Double}


class Meta(Base):
    """Facts about the database itself: ``database_id``, minted once when the schema is
    made, names this database's runs on disk (two databases never share a run folder)."""

    __tablename__ = "gridlab_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Grid(Base):
    """One grid file, by name. Re-enqueueing a grid of the same name adds to it."""

    __tablename__ = "grids"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source_path: Mapped[str | None] = mapped_column(Text)
    source_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float]


class Job(Base):
    """One cell of a grid: a resolved experiment spec and its place in the queue."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("grid_id", "spec_hash"),
        # The claim query's access path: runnable jobs in priority order.
        Index("ix_jobs_claim", "state", "priority", "id"),
        # The reaper's access path: running jobs by lease expiry. (A partial index on
        # running rows only was tried: 5 % less server CPU for a 100,000-job enqueue on
        # PostgreSQL, but 10-12 % fewer jobs/s through the SQLite queue, whose every state
        # change then re-evaluates the index's WHERE; BENCHMARKS.md.)
        Index("ix_jobs_lease", "state", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"))
    spec_hash: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]]
    factors: Mapped[dict[str, Any]]
    #: the grid file text whose enqueue created this job (NULL: enqueued before versions were kept)
    grid_version_id: Mapped[int | None] = mapped_column(ForeignKey("grid_versions.id", ondelete="SET NULL"))
    experiment: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    backoff_s: Mapped[float] = mapped_column(default=10.0)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[float | None]
    heartbeat_at: Mapped[float | None]
    not_before: Mapped[float | None]
    created_at: Mapped[float]
    updated_at: Mapped[float]
    started_at: Mapped[float | None]
    finished_at: Mapped[float | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    #: The sealed checkpoint the job resumes from, and its step: what the database
    #: records is the only checkpoint a later attempt loads (jobs.checkpoints).
    checkpoint_path: Mapped[str | None] = mapped_column(Text)
    checkpoint_step: Mapped[int | None]
    #: The newest metrics batch stored by the current attempt (reset at each claim):
    #: a batch retried after a lost commit acknowledgement is recognised and skipped.
    metrics_batch: Mapped[int] = mapped_column(default=0, server_default="0")
    #: What the cell needs to run (jobs.resources), e.g. ``gpus=2,cpus=8,mem=64G``; ``default``
    #: when its grid states nothing. A worker launched for a class claims only its jobs.
    resource_class: Mapped[str] = mapped_column(String(200), default="default", server_default="default")


class Attempt(Base):
    """One try at a job: who ran it, where, and how it ended."""

    __tablename__ = "attempts"
    __table_args__ = (UniqueConstraint("job_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int]
    worker: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int]
    slurm_job_id: Mapped[str | None] = mapped_column(String(64))
    slurm_array_index: Mapped[int | None]
    node: Mapped[str | None] = mapped_column(String(200))
    #: the code, environment and machine the attempt ran on (NULL: not recorded)
    provenance_id: Mapped[int | None] = mapped_column(ForeignKey("provenances.id"))
    started_at: Mapped[float]
    ended_at: Mapped[float | None]
    outcome: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    #: The failure's exception type (module.Class), as data: never parsed from the error text.
    error_type: Mapped[str | None] = mapped_column(String(200))
    #: The step this attempt's curve continues from (its checkpoint's), or None: it started fresh.
    resumed_from_step: Mapped[int | None]
    #: GPUs the attempt was given (its resource class's, else the worker's visible ones), the
    #: cells its worker shared them between (cells_per_gpu, --cells-per-device; NULL: none), and
    #: their seconds: wall time x devices / cells_sharing, written when the attempt ends.
    devices: Mapped[int | None]
    cells_sharing: Mapped[int | None]
    device_seconds: Mapped[float | None]


class Event(Base):
    """Every state change of every job: from, to, who and why."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_job", "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    at: Mapped[float]
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int | None]
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)


class Metric(Base):
    """One logged value: (job, name, step) is stored once, whatever retries happen."""

    __tablename__ = "metrics"
    __table_args__ = (
        UniqueConstraint("job_id", "name", "step"),
        # The dashboard's curves: one metric of many jobs, bucketed by step, read from
        # the index alone (it holds the value), never from the table.
        Index("ix_metrics_curves", "job_id", "name", "step", "value"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int]
    name: Mapped[str] = mapped_column(String(100))
    step: Mapped[int]
    value: Mapped[float | None]  # NULL is NaN (SQLite cannot store NaN)
    wall_time: Mapped[float]


class Summary(Base):
    """A job's final figures: one value per (job, name)."""

    __tablename__ = "summaries"

    job_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float | None]  # NULL is NaN
    attempt: Mapped[int]


meta = Meta.__table__
jobs = Job.__table__
grids = Grid.__table__
attempts = Attempt.__table__
events = Event.__table__
metrics = Metric.__table__
summaries = Summary.__table__


class JobDependency(Base):
    """``job_id`` may run only once ``depends_on`` has succeeded (e.g. a judge job and its arms)."""

    __tablename__ = "job_dependencies"
    __table_args__ = (Index("ix_job_dependencies_depends_on", "depends_on"),)

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    depends_on: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)


class Generation(Base):
    """One generated answer: a job's output for one prompt and turn, with its timing."""

    __tablename__ = "generations"
    __table_args__ = (UniqueConstraint("job_id", "prompt_set", "question_id", "turn"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int]
    prompt_set: Mapped[str] = mapped_column(String(200))
    question_id: Mapped[str] = mapped_column(String(100))
    category: Mapped[str | None] = mapped_column(String(100))
    turn: Mapped[int]
    prompt: Mapped[str] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    new_tokens: Mapped[int]
    latency_s: Mapped[float]
    decoding: Mapped[dict[str, Any]]
    created_at: Mapped[float]


class Judgment(Base):
    """A judge job's verdict on two arms' answers to one prompt and turn."""

    __tablename__ = "judgments"
    __table_args__ = (UniqueConstraint("job_id", "prompt_set", "question_id", "turn"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))  # the judge job
    arm_a: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    arm_b: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    judge: Mapped[str] = mapped_column(String(100))  # e.g. "pairrm"
    prompt_set: Mapped[str] = mapped_column(String(200))
    question_id: Mapped[str] = mapped_column(String(100))
    turn: Mapped[int]
    winner: Mapped[str] = mapped_column(String(8))  # "a", "b" or "tie"
    logit: Mapped[float]  # the judge's preference for a over b
    created_at: Mapped[float]


class WorkerJob(Base):
    """A dispatched worker (one Slurm array task, or a local process) and what its
    executor last said about it."""

    __tablename__ = "worker_jobs"
    __table_args__ = (UniqueConstraint("executor", "external_id"), Index("ix_worker_jobs_state", "state"))

    id: Mapped[int] = mapped_column(primary_key=True)
    executor: Mapped[str] = mapped_column(String(16))  # "slurm" or "local"
    external_id: Mapped[str] = mapped_column(String(64))  # Slurm "1234_3", or host:pid
    array_index: Mapped[int | None]
    state: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(Text)
    folder: Mapped[str | None] = mapped_column(Text)
    #: the resource class the worker was submitted for (None: it claims any job)
    resource_class: Mapped[str | None] = mapped_column(String(200))
    submitted_at: Mapped[float]
    updated_at: Mapped[float]


#: Buckets of a finished curve's finest roll-up level (at most): the most the
#: dashboard draws per curve. Each coarser level's grain is ROLLUP_FACTOR grains of the
#: level below (250 buckets at level 1), for overlays of hundreds of runs.
ROLLUP_BUCKETS = 1000
ROLLUP_FACTOR = 4
ROLLUP_LEVELS = 2


def rollup_grain(first: int, last: int, level: int = 0) -> int:
    """Steps per bucket of roll-up ``level`` of a curve logged from step ``first`` to
    ``last``: ceil(span / ROLLUP_BUCKETS) * ROLLUP_FACTOR ** level."""
    return max(1, -(-(last - first + 1) // ROLLUP_BUCKETS)) * ROLLUP_FACTOR**level


class CurveRollup(Base):
    """One level of a finished curve's roll-up (a job's metric), written when the job
    reached a final state: its step range and grain. Its buckets are in curve_buckets.
    Written and removed by the queue only (a job put back in the queue loses its
    roll-ups); read by the dashboard, which never writes."""

    __tablename__ = "curve_rollups"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    level: Mapped[int] = mapped_column(primary_key=True)  # 0 (finest) .. ROLLUP_LEVELS - 1
    first_step: Mapped[int]
    last_step: Mapped[int]
    grain: Mapped[int]  # steps per bucket: rollup_grain(first_step, last_step, level) when written
    points: Mapped[int]


class CurveBucket(Base):
    """Steps first_step + bucket * grain .. + grain - 1 of a rolled-up curve: how many
    points, how many of them are numbers (not NaN), their sum, min and max, and the
    last step logged. Any whole number of grains is re-aggregated from these exactly."""

    __tablename__ = "curve_buckets"
    __table_args__ = (
        ForeignKeyConstraint(["job_id", "name", "level"],
                             ["curve_rollups.job_id", "curve_rollups.name", "curve_rollups.level"], ondelete="CASCADE"),
        # On SQLite, clustered by its key: a curve's level is read in one range scan.
        {"sqlite_with_rowid": False},
    )

    job_id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    level: Mapped[int] = mapped_column(primary_key=True)
    bucket: Mapped[int] = mapped_column(primary_key=True)
    last_step: Mapped[int]
    points: Mapped[int]
    value_count: Mapped[int]  # points whose value is not NULL (NaN)
    value_sum: Mapped[float | None]
    value_min: Mapped[float | None]
    value_max: Mapped[float | None]


#: What an attention row was probed on: a training batch, the evaluation probe, the batch
#: on which the loss went non-finite.
ATTENTION_PHASES = ("train", "eval", "diverged")


class AttentionRow(Base):
    """One attention layer's probe at one step (harness.training.diagnostics): per head, the
    mean attention entropy (nats), the same over its maximum (log of the keys a query sees;
    1 is uniform), and the NaN values counted in the attention matrix; ``max_entropy`` is
    the mean log(keys) over the counted queries. ``stack`` is '' for a decoder-only model,
    the probe's stack name ('enc', 'dec') for an encoder-decoder. Written fenced, in the
    metrics batches' transactions, and cut back with the curve when a later attempt resumes
    from a checkpoint (jobs.queries.rewind)."""

    __tablename__ = "attention_rows"
    __table_args__ = (
        CheckConstraint("phase IN ('train', 'eval', 'diverged')", name="phase"),
        # On SQLite, clustered by its key: a job's rows are read in one range scan.
        {"sqlite_with_rowid": False},
    )

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(primary_key=True)
    phase: Mapped[str] = mapped_column(String(16), primary_key=True)
    stack: Mapped[str] = mapped_column(String(16), primary_key=True)
    layer: Mapped[int] = mapped_column(primary_key=True)
    attempt: Mapped[int]
    entropy: Mapped[list[float | None]] = mapped_column(JSON)  # per head; null: not finite
    entropy_norm: Mapped[list[float | None]] = mapped_column(JSON)
    nan: Mapped[list[int]] = mapped_column(JSON)
    max_entropy: Mapped[float | None]  # NULL: not finite


job_dependencies = JobDependency.__table__
attention_rows = AttentionRow.__table__
curve_rollups = CurveRollup.__table__
curve_buckets = CurveBucket.__table__
generations = Generation.__table__
judgments = Judgment.__table__
worker_jobs = WorkerJob.__table__


# --- provenance: what produced each result (migration 0007) ------------------------
#
# Each row below is stored once and shared: every attempt names one ``provenances`` row
# (code x environment x machine x where the code was imported from), each job the
# ``grid_versions`` row of the grid file text whose enqueue created it. Rows are found
# by ``fingerprint`` (sha256 of what they hold), never updated, never deleted.


class GridVersion(Base):
    """One text of a grid file, as an enqueue read it: versions are kept, not overwritten."""

    __tablename__ = "grid_versions"
    __table_args__ = (UniqueConstraint("grid_id", "text_hash"), UniqueConstraint("grid_id", "number"))

    id: Mapped[int] = mapped_column(primary_key=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"))
    number: Mapped[int]  # 1, 2, ... per grid, in the order enqueues first read them
    text_hash: Mapped[str] = mapped_column(String(64))  # sha256 of source_text
    source_path: Mapped[str | None] = mapped_column(Text)
    source_text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float]


class CodeVersion(Base):
    """The source code a worker imported: a hash of its source files and, from git, the
    commit, whether the tree was dirty, and the diff against the commit (untracked files
    included)."""

    __tablename__ = "code_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    files_hash: Mapped[str] = mapped_column(String(64))  # sha256 over (path, sha256 of content) of the source files
    files: Mapped[int]  # how many source files
    git_commit: Mapped[str | None] = mapped_column(String(64))  # NULL: no git
    git_dirty: Mapped[bool | None] = mapped_column(Boolean)
    diff_hash: Mapped[str | None] = mapped_column(String(64))  # sha256 of the whole diff
    diff: Mapped[str | None] = mapped_column(Text)  # the diff (cut at 4 MiB; diff_hash is of all of it)
    created_at: Mapped[float]


class Environment(Base):
    """The Python environment a worker ran in: the versions that matter, and the full
    list of installed distributions (``pip freeze`` form), once per distinct environment."""

    __tablename__ = "environments"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    python: Mapped[str] = mapped_column(String(100))
    packages: Mapped[dict[str, Any]]  # torch, its CUDA, transformers, peft, datasets, lm-eval, llm-blender, gridlab
    freeze: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float]


class Machine(Base):
    """The machine a worker ran on: host, CPUs, GPUs, driver and CUDA. (The Slurm job and
    node are the attempt's own columns.)"""

    __tablename__ = "machines"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    host: Mapped[str] = mapped_column(String(200))
    platform: Mapped[str] = mapped_column(String(200))
    cpu_count: Mapped[int]  # CPUs this process may use (its affinity: Slurm's allocation)
    gpu_count: Mapped[int]  # GPUs this process may use (CUDA_VISIBLE_DEVICES)
    gpu_name: Mapped[str | None] = mapped_column(String(200))
    gpu_driver: Mapped[str | None] = mapped_column(String(64))
    cuda_driver: Mapped[str | None] = mapped_column(String(32))  # the CUDA version the driver supports
    created_at: Mapped[float]


class ProvenanceRecord(Base):
    """What an attempt ran: its code, environment and machine, and where the code was
    imported from (a pinned snapshot under the runs folder, or a live checkout)."""

    __tablename__ = "provenances"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    code_id: Mapped[int] = mapped_column(ForeignKey("code_versions.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    machine_id: Mapped[int] = mapped_column(ForeignKey("machines.id"))
    code_root: Mapped[str] = mapped_column(Text)
    pinned: Mapped[bool] = mapped_column(Boolean)  # code_root is a snapshot made by `gridlab launch`
    created_at: Mapped[float]


grid_versions = GridVersion.__table__
code_versions = CodeVersion.__table__
environments = Environment.__table__
machines = Machine.__table__
provenances = ProvenanceRecord.__table__
