"""SQLite backs Slurm workers only on one node with a local file."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm import sqlite_safety
from slurm.settings import SlurmSettings

pytestmark = pytest.mark.unit

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /home rw,relatime shared:20 - nfs4 fs.example.org:/home rw,vers=4.2
41 40 0:36 / /home/alice/local rw,relatime shared:21 - xfs /dev/sdb1 rw
42 22 0:37 / /scratch rw,relatime shared:22 - lustre 10.0.0.1@o2ib:/scratch rw
43 22 0:38 / /mnt/with\\040space rw - cifs //srv/share rw
"""


@pytest.mark.parametrize("path, fs", [
    ("/tmp/gridlab.db", "ext4"), ("/home/alice/gridlab.db", "nfs4"), ("/home/alice/local/g.db", "xfs"),
    ("/scratch/u/g.db", "lustre"), ("/mnt/with space/g.db", "cifs"), ("/homework/g.db", "ext4"),
])
def test_filesystem_type_is_that_of_the_longest_mount_point(path, fs):
    assert sqlite_safety.filesystem_type(Path(path), MOUNTINFO) == fs


def one_node(_settings):
    return ["node1"]


def two_nodes(_settings):
    return ["node1", "node2"]


def test_network_filesystem_is_refused():
    with pytest.raises(sqlite_safety.SQLiteNotSafeHere, match=r"network filesystem \(nfs4\).*PostgreSQL"):
        sqlite_safety.check("sqlite:////home/alice/g.db", SlurmSettings(), workers=1, nodes=one_node, mountinfo=MOUNTINFO)
    with pytest.raises(sqlite_safety.SQLiteNotSafeHere, match="lustre"):
        sqlite_safety.check("sqlite:////scratch/g.db", SlurmSettings(), workers=1, nodes=one_node, mountinfo=MOUNTINFO)


def test_workers_on_several_nodes_are_refused_one_node_is_allowed():
    local = "sqlite:////tmp/g.db"
    with pytest.raises(sqlite_safety.SQLiteNotSafeHere, match="4 workers may run on 2 nodes.*PostgreSQL"):
        sqlite_safety.check(local, SlurmSettings(), workers=4, nodes=two_nodes, mountinfo=MOUNTINFO)
    with pytest.raises(sqlite_safety.SQLiteNotSafeHere, match="asks for 2 nodes"):
        sqlite_safety.check(local, SlurmSettings(extra={"nodes": "2"}), workers=1, nodes=one_node, mountinfo=MOUNTINFO)
    sqlite_safety.check(local, SlurmSettings(), workers=4, nodes=one_node, mountinfo=MOUNTINFO)
    sqlite_safety.check(local, SlurmSettings(), workers=1, nodes=two_nodes, mountinfo=MOUNTINFO)  # one worker, one node
    pinned = SlurmSettings(extra={"nodelist": "node2"})
    sqlite_safety.check(local, pinned, workers=4, mountinfo=MOUNTINFO)  # nodelist pins one node: sinfo not asked
    sqlite_safety.check("postgresql://u@h/d", SlurmSettings(), workers=64, nodes=two_nodes, mountinfo=MOUNTINFO)
