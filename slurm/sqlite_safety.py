"""Where SQLite may back Slurm workers: one node, a local file.

SQLite's locking (and WAL's shared memory) does not work on network filesystems (NFS,
Lustre, GPFS, CIFS, ...), and the leases gridlab judges by "the database's clock" are,
with SQLite, each node's own clock. A Slurm launch against SQLite is therefore refused
when the file is on a network filesystem, or when the workers may run on more than one
node; one node with a local file stays allowed (the one-node cluster in slurm/cluster).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from db.errors import GridlabError
from slurm.settings import SlurmSettings

#: Filesystem types (as /proc/self/mountinfo names them) that are shared over a network.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "lustre", "gpfs", "beegfs", "ceph", "cephfs", "glusterfs",
    "fuse.glusterfs", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.beegfs", "fuse.ceph", "9p", "afs", "pvfs2",
    "orangefs", "panfs", "ocfs2", "gfs2", "wekafs", "fuse.juicefs", "davfs", "fuse.rclone", "virtiofs",
})
MOUNTINFO = Path("/proc/self/mountinfo")
FIX = "use PostgreSQL for Slurm workers: --db postgresql://USER@HOST/DBNAME (see slurm/README.md)"


class SQLiteNotSafeHere(GridlabError):
    """SQLite would be shared across nodes or over a network filesystem."""


def filesystem_type(path: Path, mountinfo: str | None = None) -> str | None:
    """The type of the filesystem ``path`` is on (longest mount point that holds it)."""
    if mountinfo is None:
        try:
            mountinfo = MOUNTINFO.read_text()
        except OSError:
            return None
    target = str(path.resolve())
    best, best_type = "", None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # \040 is a space
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
            best, best_type = mount, tail[0]
    return best_type


def slurm_nodes(settings: SlurmSettings) -> list[str] | None:
    """The nodes the workers may land on: a single ``nodelist`` if the settings pin one,
    else every node of the partition (sinfo); None if sinfo cannot say."""
    pinned = settings.extra.get("nodelist") or settings.extra.get("w")
    if isinstance(pinned, str) and re.fullmatch(r"[\w.\-]+", pinned):
        return [pinned]
    cmd = ["sinfo", "-h", "-N", "-o", "%N"]
    if settings.partition:
        cmd += ["-p", settings.partition]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return sorted(set(out.stdout.split()))


def check(url: str, settings: SlurmSettings, *, workers: int, nodes=None, mountinfo: str | None = None) -> None:
    """Refuse a Slurm launch that would share a SQLite file across nodes or a network."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    path = Path(parsed.database).expanduser()
    fs = filesystem_type(path if path.exists() else path.parent, mountinfo)
    if fs is not None and (fs in NETWORK_FILESYSTEMS or fs.startswith("nfs")):
        raise SQLiteNotSafeHere(f"SQLite database {path} is on a network filesystem ({fs}), where SQLite's locks and "
                                "WAL do not work", FIX)
    per_worker = str(settings.extra.get("nodes", "1"))
    if per_worker not in ("1", "1-1"):
        raise SQLiteNotSafeHere(f"each worker asks for {per_worker} nodes, and SQLite's clock and file are each "
                                "node's own", FIX)
    if workers > 1:
        found = (nodes or slurm_nodes)(settings)
        if found is not None and len(found) > 1:
            raise SQLiteNotSafeHere(
                f"{workers} workers may run on {len(found)} nodes ({', '.join(found[:4])}{', ...' if len(found) > 4 else ''}), "
                "and SQLite's clock and file are each node's own",
                FIX + ", or keep them on one node with --sbatch nodelist=NODE")
