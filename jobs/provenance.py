"""What a worker runs with: its code, its Python environment and its machine.

Captured once per worker process (:func:`current`) and recorded on every attempt it
claims (:meth:`jobs.queue.Queue.claim`), each part stored once in the database and
shared by every attempt that used it (db/models.py, migration 0007).

- **Code**: a hash of the source files of the folder this gridlab was imported from,
  and, from git, the commit, whether the tree is dirty, and the diff against the commit
  with untracked files included (nothing is written to the repository: no index, no
  objects). A pinned snapshot (:mod:`slurm.snapshot`) carries the git facts of the
  checkout it was made from in its manifest; its files are hashed again here, so an
  edited snapshot shows.
- **Environment**: Python, the versions that matter (torch and the CUDA it was built
  for, transformers, peft, datasets, lm-eval, llm-blender, gridlab, ...), and every
  installed distribution as ``name==version`` lines, from importlib.metadata (no
  ``pip freeze`` subprocess).
- **Machine**: host, platform, usable CPUs, and the GPUs this process may use (name,
  count, driver, the CUDA version the driver supports) from NVML, the library
  nvidia-smi uses, through ctypes; no torch import and no CUDA context.

Nothing here raises: a part that cannot be read is recorded as unknown.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform as platform_mod
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

#: Files whose content is code or what code reads (package data, configs); docs are not.
SOURCE_SUFFIXES = frozenset({".py", ".pyi", ".pyx", ".c", ".cc", ".cpp", ".cu", ".h", ".yaml", ".yml", ".json",
                             ".jsonl", ".toml", ".cfg", ".ini", ".mako", ".sh", ".in", ".txt"})
#: Larger files are data, not code: left out of the hash and of snapshots.
MAX_SOURCE_BYTES = 8 * 1024 * 1024
#: The manifest a pinned snapshot carries at its root (written by slurm.snapshot).
SNAPSHOT_MANIFEST = "gridlab-snapshot.json"
SNAPSHOT_DIFF = "gridlab-snapshot.diff"
#: Diffs are stored up to this many characters (their hash is of the whole diff).
MAX_DIFF_CHARS = 4 * 1024 * 1024
#: The distributions whose versions `gridlab show` and drift warnings name.
KEY_PACKAGES = ("torch", "transformers", "peft", "datasets", "lm-eval", "llm-blender", "accelerate", "numpy",
                "gridlab")
GIT_TIMEOUT_S = 30


def _sha(text: str | bytes) -> str:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def clean(text: str | None) -> str | None:
    """Text any database stores: undecodable bytes and NULs replaced."""
    if text is None:
        return None
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\x00", "\ufffd")


def _fingerprint(parts: dict[str, Any]) -> str:
    return _sha(json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str))


@dataclass(frozen=True)
class Code:
    files_hash: str
    files: int
    git_commit: str | None = None
    git_dirty: bool | None = None
    diff_hash: str | None = None
    diff: str | None = field(default=None, repr=False)

    @cached_property
    def fingerprint(self) -> str:
        return _fingerprint({"files_hash": self.files_hash, "files": self.files, "commit": self.git_commit,
                             "dirty": self.git_dirty, "diff_hash": self.diff_hash})

    def label(self) -> str:
        """Short: ``a1b2c3d4``, ``a1b2c3d4+dirty:5e6f70``, or ``files:9a8b7c6d`` without git."""
        from db.provenance import code_label

        return code_label(self.git_commit, self.git_dirty, self.diff_hash, self.files_hash)


@dataclass(frozen=True)
class Environment:
    python: str
    packages: dict[str, str | None]
    freeze: str = field(repr=False)

    @cached_property
    def fingerprint(self) -> str:
        return _fingerprint({"python": self.python, "packages": self.packages, "freeze": _sha(self.freeze)})


@dataclass(frozen=True)
class Machine:
    host: str
    platform: str
    cpu_count: int
    gpu_count: int = 0
    gpu_name: str | None = None
    gpu_driver: str | None = None
    cuda_driver: str | None = None

    @cached_property
    def fingerprint(self) -> str:
        return _fingerprint({f.name: getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True)
class Provenance:
    """Everything an attempt ran with; ``code_root`` is the folder the code came from."""

    code: Code
    environment: Environment
    machine: Machine
    code_root: str
    pinned: bool

    @cached_property
    def fingerprint(self) -> str:
        return _fingerprint({"code": self.code.fingerprint, "environment": self.environment.fingerprint,
                             "machine": self.machine.fingerprint, "root": self.code_root, "pinned": self.pinned})


_CURRENT: Provenance | None = None


def current() -> Provenance:
    """This process's provenance, captured on first use (a worker's start)."""
    global _CURRENT
    if _CURRENT is None:
        _CURRENT = capture()
    return _CURRENT


def capture(root: str | Path | None = None) -> Provenance:
    root = Path(root) if root is not None else code_root()
    pinned = (root / SNAPSHOT_MANIFEST).is_file()
    return Provenance(code=capture_code(root), environment=capture_environment(), machine=capture_machine(),
                      code_root=clean(str(root)), pinned=pinned)


def code_root() -> Path:
    """The folder this gridlab's packages were imported from (a checkout, or a snapshot)."""
    return Path(__file__).resolve().parent.parent


# --- code -------------------------------------------------------------------------------


def capture_code(root: Path, *, exclude: tuple[Path, ...] = ()) -> Code:
    return capture_code_and_files(root, exclude=exclude)[0]


def capture_code_and_files(root: Path, *, exclude: tuple[Path, ...] = ()) -> tuple[Code, list[str]]:
    """The code under ``root`` and the source files its hash covers (relative paths)."""
    manifest = _read_manifest(root)
    if manifest is not None:
        return _snapshot_code(root, manifest), [f for f in manifest.get("files", []) if isinstance(f, str)]
    git = _git_facts(root)
    files = source_files(root, exclude=exclude, git=git is not None)
    files_hash = hash_files(root, files)
    if git is None:
        return Code(files_hash=files_hash, files=len(files)), files
    commit, dirty = git
    diff = _git_diff(root) if dirty else None
    return Code(files_hash=files_hash, files=len(files), git_commit=commit, git_dirty=dirty,
                diff_hash=_sha(diff.encode("utf-8", "surrogateescape")) if diff is not None else None,
                diff=clean(diff[:MAX_DIFF_CHARS]) if diff is not None else None), files


def _snapshot_code(root: Path, manifest: dict[str, Any]) -> Code:
    files = [f for f in manifest.get("files", []) if isinstance(f, str)]
    files_hash = hash_files(root, files)
    diff_path = root / SNAPSHOT_DIFF
    diff = clean(diff_path.read_text(encoding="utf-8", errors="replace")) if diff_path.is_file() else None
    edited = files_hash != manifest.get("files_hash")
    return Code(files_hash=files_hash, files=len(files), git_commit=manifest.get("git_commit"),
                # A snapshot edited after it was made no longer matches its commit and diff.
                git_dirty=True if edited else manifest.get("git_dirty"),
                diff_hash=None if edited else manifest.get("diff_hash"),
                diff=None if edited else diff)


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / SNAPSHOT_MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_source(path: str) -> bool:
    return Path(path).suffix.lower() in SOURCE_SUFFIXES


def source_files(root: Path, *, exclude: tuple[Path, ...] = (), git: bool | None = None) -> list[str]:
    """The source files under ``root``, as sorted relative paths: with git, the tracked and
    untracked-but-not-ignored ones; without, those of the top-level Python packages and
    the top-level files. Folders that hold a snapshot, and ``exclude``, are left out."""
    listed = _git_ls(root) if git is not False else None
    if listed is None:
        listed = _walk(root)
    skip = [Path(p).resolve() for p in exclude]
    snapshots = [str(Path(p).parent) + "/" for p in listed if Path(p).name == SNAPSHOT_MANIFEST and "/" in p]
    out = []
    for rel in listed:
        if not is_source(rel) or any(rel.startswith(s) for s in snapshots):
            continue
        path = root / rel
        if skip and any(_within(path, s) for s in skip):
            continue
        try:
            if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_SOURCE_BYTES:
                continue
        except OSError:
            continue
        out.append(rel)
    return sorted(set(out))


def _within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _walk(root: Path) -> list[str]:
    out: list[str] = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return out
    for entry in entries:
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        if entry.is_file():
            out.append(entry.name)
        elif entry.is_dir() and (entry / "__init__.py").is_file() and not (entry / SNAPSHOT_MANIFEST).exists():
            for dirpath, dirnames, filenames in os.walk(entry):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
                rel = Path(dirpath).relative_to(root)
                out.extend(str(rel / f) for f in sorted(filenames))
    return out


def hash_files(root: Path, files: list[str]) -> str:
    """sha256 over each file's path and the sha256 of its content (a missing file counts)."""
    total = hashlib.sha256()
    for rel in files:
        try:
            digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        except OSError:
            digest = "missing"
        total.update(f"{rel}\0{digest}\n".encode("utf-8", "surrogateescape"))
    return total.hexdigest()


def _git(root: Path, *args: str, env: dict[str, str] | None = None) -> str | None:
    if shutil.which("git") is None:
        return None
    try:
        proc = subprocess.run(["git", "-c", "core.quotepath=off", *args], cwd=root, capture_output=True,
                              timeout=GIT_TIMEOUT_S, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", **(env or {})})
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", "surrogateescape")


def _git_facts(root: Path) -> tuple[str | None, bool] | None:
    """(commit or None before the first commit, dirty), or None if ``root`` is not in a git
    work tree (or git is missing or refuses it)."""
    if _git(root, "rev-parse", "--is-inside-work-tree") is None:
        return None
    head = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=normal")
    if status is None:
        return None
    return (head.strip() if head else None), bool(status)


def _git_ls(root: Path) -> list[str] | None:
    out = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if out is None:
        return None
    return [p for p in out.split("\0") if p]


_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def _git_diff(root: Path) -> str | None:
    """The work tree against HEAD, untracked (not ignored) source files included, as one
    patch that ``git apply`` takes. Nothing is written to the repository (no index, no
    objects): tracked changes come from ``git diff``, untracked text files are written out
    as new files here, binary ones by ``git diff --no-index``. Untracked files that are
    not source files (data, weights) are left out, as they are of the code's hash."""
    head = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    base = head.strip() if head else _EMPTY_TREE
    top = _git(root, "rev-parse", "--show-toplevel")
    where = Path(top.strip()) if top else root
    tracked = _git(where, "-c", "diff.noprefix=false", "-c", "diff.mnemonicPrefix=false", "diff", "--binary",
                   "--no-color", "--no-ext-diff", base, "--", ".")
    untracked = _git(where, "ls-files", "-z", "--others", "--exclude-standard")
    if tracked is None or untracked is None:
        return None
    parts = [tracked]
    for rel in sorted(p for p in untracked.split("\0") if p and is_source(p)):
        parts.append(_new_file_patch(where, rel))
    return "".join(parts)


def _git_binary_new_file(top: Path, rel: str) -> str | None:
    """A binary new file's patch (``git diff --no-index`` exits 1 when files differ)."""
    try:
        proc = subprocess.run(["git", "diff", "--no-index", "--binary", "--no-color", "--no-ext-diff", "--",
                               "/dev/null", rel], cwd=top, capture_output=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.decode("utf-8", "surrogateescape") if proc.returncode in (0, 1) else None


def _new_file_patch(top: Path, rel: str) -> str:
    path = top / rel
    head = f"diff --git a/{rel} b/{rel}\nnew file mode {'100755' if os.access(path, os.X_OK) else '100644'}\n"
    try:
        size = path.stat().st_size
        data = path.read_bytes() if size <= MAX_SOURCE_BYTES else None
    except OSError:
        return head
    if data is None:
        return ""  # too big to be code: not hashed either
    if b"\0" in data[:8192]:
        return _git_binary_new_file(top, rel) or ""
    if not data:
        return head
    text = data.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    last_newline = text.endswith("\n")
    if last_newline:
        lines = lines[:-1]
    body = "".join(f"+{line}\n" for line in lines)
    if not last_newline:
        body += "\\ No newline at end of file\n"
    return head + f"--- /dev/null\n+++ b/{rel}\n@@ -0,0 +1,{len(lines)} @@\n" + body


# --- environment ----------------------------------------------------------------------


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def capture_environment() -> Environment:
    versions: dict[str, str] = {}
    try:
        for dist in importlib.metadata.distributions():
            name = dist.metadata.get("Name") if dist.metadata is not None else None
            if name:
                versions.setdefault(_canonical(name), dist.version)  # sys.path order: the one imported
    except Exception:  # a broken distribution must not stop a worker
        pass
    packages: dict[str, str | None] = {name: versions.get(name) for name in KEY_PACKAGES}
    packages["torch_cuda"] = torch_cuda_version()
    freeze = "\n".join(f"{name}=={version}" for name, version in sorted(versions.items()))
    python = f"{platform_mod.python_implementation()} {platform_mod.python_version()}"
    return Environment(python=python, packages=packages, freeze=freeze)


def torch_cuda_version() -> str | None:
    """The CUDA torch was built for, from torch/version.py, without importing torch."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text()
    except OSError:
        return None
    m = re.search(r"^cuda\s*(?::[^=\n]*)?=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    return m.group(1) if m else None


# --- machine --------------------------------------------------------------------------

#: Where the NVIDIA kernel module describes the driver and GPUs (the fallback without NVML).
PROC_NVIDIA = Path("/proc/driver/nvidia")


def capture_machine() -> Machine:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 0
    names, driver, cuda = _gpus()
    names = visible(names, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return Machine(host=clean(socket.gethostname())[:200], platform=clean(platform_mod.platform())[:200], cpu_count=cpus,
                   gpu_count=len(names), gpu_name=clean(", ".join(dict.fromkeys(names)))[:200] or None,
                   gpu_driver=clean(driver), cuda_driver=clean(cuda))


def visible(names: list[str], cuda_visible_devices: str | None) -> list[str]:
    """The GPUs of ``names`` (index order) this process may use under CUDA_VISIBLE_DEVICES:
    all when it is unset, none when it is empty or -1, the listed indices otherwise (UUIDs
    and MIG ids cannot be matched to names here: they count, named as the first GPU)."""
    if cuda_visible_devices is None:
        return names
    entries = [e.strip() for e in cuda_visible_devices.split(",") if e.strip()]
    out: list[str] = []
    for e in entries:
        if e.lstrip("-").isdigit():
            i = int(e)
            if i < 0:
                break  # CUDA stops at the first invalid index
            if i < len(names):
                out.append(names[i])
        elif names:
            out.append(names[0])
    return out


def _gpus() -> tuple[list[str], str | None, str | None]:
    """(GPU names in index order, driver version, CUDA version the driver supports)."""
    try:
        found = _nvml()
    except Exception:  # a broken driver must not stop a worker
        found = None
    return found if found is not None else _proc_nvidia(PROC_NVIDIA)


def _nvml() -> tuple[list[str], str | None, str | None] | None:
    try:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    init = getattr(lib, "nvmlInit_v2", None) or lib.nvmlInit
    if init() != 0:
        return None
    try:
        count = ctypes.c_uint(0)
        get_count = getattr(lib, "nvmlDeviceGetCount_v2", None) or lib.nvmlDeviceGetCount
        if get_count(ctypes.byref(count)) != 0:
            return None
        by_index = getattr(lib, "nvmlDeviceGetHandleByIndex_v2", None) or lib.nvmlDeviceGetHandleByIndex
        names = []
        for i in range(count.value):
            handle = ctypes.c_void_p()
            buf = ctypes.create_string_buffer(96)
            if by_index(ctypes.c_uint(i), ctypes.byref(handle)) == 0 and lib.nvmlDeviceGetName(handle, buf, 96) == 0:
                names.append(buf.value.decode(errors="replace"))
            else:
                names.append("unknown GPU")
        buf = ctypes.create_string_buffer(96)
        driver = buf.value.decode() if lib.nvmlSystemGetDriverVersion(buf, 96) == 0 else None
        version = ctypes.c_int(0)
        get_cuda = getattr(lib, "nvmlSystemGetCudaDriverVersion_v2", None) or getattr(lib, "nvmlSystemGetCudaDriverVersion", None)
        cuda = None
        if get_cuda is not None and get_cuda(ctypes.byref(version)) == 0 and version.value:
            cuda = f"{version.value // 1000}.{(version.value % 1000) // 10}"
        return names, driver, cuda
    finally:
        lib.nvmlShutdown()


def _proc_nvidia(base: Path) -> tuple[list[str], str | None, str | None]:
    names: list[str] = []
    gpus = base / "gpus"
    try:
        folders = sorted(gpus.iterdir()) if gpus.is_dir() else []
    except OSError:
        folders = []
    for folder in folders:  # one per GPU, named by PCI address: index order
        try:
            info = (folder / "information").read_text()
        except OSError:
            continue
        m = re.search(r"^Model:\s*(.+)$", info, re.MULTILINE)
        names.append(m.group(1).strip() if m else "unknown GPU")
    driver = None
    try:
        m = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?([0-9][0-9.]+)", (base / "version").read_text())
        driver = m.group(1) if m else None
    except OSError:
        pass
    return names, driver, None


def describe(p: Provenance) -> dict[str, str]:
    """One line per part, for logs."""
    m = p.machine
    gpus = f"{m.gpu_count} x {m.gpu_name}" if m.gpu_count else "no GPU"
    return {
        "code": f"{p.code.label()} ({'pinned snapshot' if p.pinned else 'live tree'} {p.code_root})",
        "environment": f"{p.environment.python}, torch {p.environment.packages.get('torch')}",
        "machine": f"{m.host}, {m.cpu_count} CPUs, {gpus}",
    }


__all__ = ["Code", "Environment", "Machine", "Provenance", "capture", "current", "describe", "source_files",
           "hash_files"]
