"""Offline readiness (``gridlab check``, ``gridlab fetch``, launch's check), with no network.

Stand-ins: a Hugging Face cache laid out as huggingface_hub lays it out
(``models--ORG--NAME/{blobs,refs/main,snapshots/<commit>/...}``, snapshot files linking to blobs)
holding the tiny offline models under hub names; ``datasets``' prepared Arrow cache made by
``datasets`` itself from a local folder; and a :class:`harness.readiness.fetch.Hub` that copies
from those stand-ins (the boundary: the real one calls ``snapshot_download``, ``hf_hub_download``
and ``load_dataset``). Every test runs with sockets refused, so nothing can reach the hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from harness import grid as grid_mod
from harness import terminal
from harness.readiness import check, fetch, needs
from slurm import launch as launch_mod
from tests.support.cli import assert_one_line_error, invoke

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT / ".." / "shared" / "data"
SHAREGPT = "hf://datasets/anon8231489123/ShareGPT_Vicuna_unfiltered/ShareGPT_V3_unfiltered_cleaned_split.json"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


# --- the stand-ins -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Empty Hugging Face caches under tmp (HF_HOME), and no socket may connect."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))

    def refused(*args, **kwargs):
        raise OSError("network refused in this test")

    monkeypatch.setattr(socket.socket, "connect", refused)
    monkeypatch.setattr(socket, "create_connection", refused)
    return check.Caches.from_env()


def put_in_hub_cache(hub: Path, repo_id: str, folder: Path, *, repo_type: str = "model") -> Path:
    """``folder``'s files as huggingface_hub caches a download of ``repo_id``: content-addressed
    blobs, a snapshot of relative links to them, ``refs/main`` naming the commit."""
    repo = hub / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def prepare_dataset(datasets_cache: Path, name: str, rows: list[dict], work: Path) -> Path:
    """The Arrow cache ``datasets.load_dataset(name)`` leaves for a hub dataset, made by ``datasets``
    itself from a local folder of the same name (cached as NAME/...), then moved to where a hub
    dataset's goes (OWNER___NAME/...)."""
    import datasets

    owner, short = name.split("/")
    source = work / "stand-ins" / owner / short
    source.mkdir(parents=True, exist_ok=True)
    (source / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    datasets.load_dataset(str(source), split="train", cache_dir=str(datasets_cache))
    target = datasets_cache / f"{owner}___{short}"
    shutil.rmtree(target, ignore_errors=True)
    (datasets_cache / short).rename(target)
    return target


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A save_pretrained directory (GPT-2 family: config, tokenizer, model.safetensors), built offline."""
    from harness.models import tiny

    return tiny.ensure("tiny-gpt2", tmp_path_factory.mktemp("models"))


ALPACA = [{"instruction": f"say {i}", "input": "", "output": f"{i}"} for i in range(4)]
SHAREGPT_ROWS = [{"id": "1", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}]


class StandInHub(fetch.Hub):
    """Answers fetch's calls from local stand-ins, writing the caches' real layout."""

    calls: list[tuple] = []

    def __init__(self, models: dict[str, Path] | None = None, work: Path | None = None) -> None:
        self.models = models or {}
        self.work = work

    def snapshot(self, repo_id, *, cache_dir, allow_patterns=None, local_dir=None):
        StandInHub.calls.append(("snapshot", repo_id, tuple(allow_patterns or ())))
        if local_dir is not None:  # llm-blender/PairRM into the judge.ranker directory
            shutil.copytree(self.models[repo_id], local_dir, dirs_exist_ok=True)
            return str(local_dir)
        return str(put_in_hub_cache(Path(cache_dir), repo_id, self.models[repo_id]))

    def file(self, repo_id, filename, *, revision, cache_dir):
        StandInHub.calls.append(("file", repo_id, filename))
        folder = self.work / "files" / repo_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / filename).write_text(json.dumps(SHAREGPT_ROWS))
        return str(put_in_hub_cache(Path(cache_dir), repo_id, folder, repo_type="dataset") / filename)

    def dataset(self, name, config, *, cache_dir):
        StandInHub.calls.append(("dataset", name, config))
        prepare_dataset(Path(cache_dir), name, ALPACA, self.work)


class UnreachableHub(fetch.Hub):
    def snapshot(self, repo_id, **kwargs):
        raise ConnectionError(f"Couldn't reach {repo_id} on the Hub")

    def file(self, repo_id, filename, **kwargs):
        raise ConnectionError(f"Couldn't reach {repo_id} on the Hub")

    def dataset(self, name, config, **kwargs):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (ConnectError)")


def write_grid(tmp_path: Path, body: str, name: str = "g") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nexperiment: sft\n" + body)
    return path


HUB_GRID = f"""
fixed: {{steps: 2, eval_prompts: demo}}
zip:
  - model: [distilgpt2, distilgpt2, EleutherAI/pythia-14m]
    dataset: [alpaca, sharegpt, synthetic]
    data_path: [tatsu-lab/alpaca, "{SHAREGPT}", ""]
"""


# --- needs ------------------------------------------------------------------------------------


def _kinds(found):
    return {(n.kind, n.label, n.source) for n in found}


def test_needs_of_a_grid_are_its_jobs_pieces_merged(tmp_path):
    found = needs.of_grid(grid_mod.load(write_grid(tmp_path, HUB_GRID)))
    assert _kinds(found) == {
        ("model", "distilgpt2", needs.HUB_MODEL),
        ("model", "EleutherAI/pythia-14m", needs.HUB_MODEL),
        ("data", "tatsu-lab/alpaca", needs.HUB_DATASET),
        ("data", "anon8231489123/ShareGPT_Vicuna_unfiltered/ShareGPT_V3_unfiltered_cleaned_split.json", needs.HUB_FILE),
        ("prompts", "demo", needs.LOCAL),
        ("lm-eval", "gridlab_heldout_perplexity", needs.BUILT),
    }
    assert {n.label: n.jobs for n in found}["distilgpt2"] == 2
    assert [n.kind for n in found] == sorted((n.kind for n in found), key=needs.KINDS.index)


def test_a_formats_default_source_and_a_local_file_are_needs(tmp_path):
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps(ALPACA[0]) + "\n" + json.dumps(ALPACA[1]) + "\n")
    found = needs.of_grid(grid_mod.load(write_grid(tmp_path, f"""
fixed: {{steps: 2, eval_prompts: '', model: tiny-pythia, dataset: alpaca}}
axes:
  data_path: ['', {str(data)!r}]
""")))
    assert ("data", "tatsu-lab/alpaca", needs.HUB_DATASET) in _kinds(found)  # alpaca's default source
    assert ("data", str(data), needs.LOCAL) in _kinds(found)
    assert ("model", "tiny-pythia", needs.BUILT) in _kinds(found)


def test_a_real_ranker_directory_needs_its_config_weights_and_the_backbone_it_names(tmp_path):
    ranker = tmp_path / "PairRM"
    ranker.mkdir()
    assert _kinds(needs.ranker_needs(str(ranker))) == {("ranker", str(ranker), needs.LOCAL),
                                                      ("backbone", needs.PAIRRM_BACKBONE, needs.HUB_MODEL)}
    (ranker / "config.json").write_text(json.dumps({"ranker_type": "pairranker", "model_name": "org/other-backbone"}))
    assert ("backbone", "org/other-backbone", needs.HUB_MODEL) in _kinds(needs.ranker_needs(str(ranker)))
    assert _kinds(needs.ranker_needs("tiny-pairrm")) == {("ranker", "tiny-pairrm", needs.BUILT)}


def test_an_lm_eval_tasks_data_is_the_hub_dataset_its_task_file_names(monkeypatch, offline, tmp_path):
    class Entry:
        def __init__(self, cfg):
            self.cfg = cfg

    index = {"arc_easy": Entry({"dataset_path": "allenai/ai2_arc", "dataset_name": "ARC-Easy",
                                "validation_split": "validation", "test_split": "test"}),
             "mmlu": Entry({})}  # a group: its cfg names no dataset
    monkeypatch.setattr(needs, "_lm_eval_index", lambda: index)
    monkeypatch.setattr(needs, "_shipped_tasks", lambda: {"gridlab_heldout_perplexity"})
    arc = needs.lm_eval_need("arc_easy")
    assert (arc.name, arc.source, arc.config, arc.splits) == ("allenai/ai2_arc", needs.HUB_DATASET, "ARC-Easy",
                                                               ("test", "validation"))
    assert arc.label == "arc_easy: allenai/ai2_arc (ARC-Easy)"
    status = check.status(arc, offline)
    assert status.state == "missing" and "load_dataset('allenai/ai2_arc', 'ARC-Easy')" in status.fix
    group = check.status(needs.lm_eval_need("mmlu"), offline)
    assert not group.ok and group.state == "unchecked" and "--skip-check" in group.fix
    assert check.status(needs.lm_eval_need("gridlab_heldout_perplexity"), offline).ok


# --- check: present, missing, broken -----------------------------------------------------------


def test_check_tells_a_cached_model_from_a_missing_one(offline, tiny_model):
    put_in_hub_cache(offline.hub, "distilgpt2", tiny_model)
    report = check.run([needs.model_need("distilgpt2"), needs.model_need("EleutherAI/pythia-14m")], offline)
    (have, have_status), (lack, lack_status) = report.rows
    assert have_status.ok and have_status.state == "present", have_status
    assert "gpt2 config, tokenizer and model.safetensors" in have_status.detail
    assert not lack_status.ok and lack_status.state == "missing"
    assert lack_status.fix.startswith("hf download EleutherAI/pythia-14m --include '*.json'")
    assert not report.ready and [n.name for n, _ in report.missing] == ["EleutherAI/pythia-14m"]


def test_what_check_calls_a_present_model_is_what_the_registry_loads_offline(offline, tiny_model, tmp_path):
    """The stand-in cache layout is the one transformers itself reads with HF_HUB_OFFLINE=1."""
    import subprocess
    import sys

    put_in_hub_cache(offline.hub, "distilgpt2", tiny_model)
    assert check.status(needs.model_need("distilgpt2"), offline).ok
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(offline.hub), "PYTHONPATH": str(ROOT)}
    code = "from harness.models import registry; print(registry.load('distilgpt2').model.config.model_type)"
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("gpt2"), done.stderr


def test_a_cached_model_whose_weights_blob_is_gone_is_broken(offline, tiny_model):
    snapshot = put_in_hub_cache(offline.hub, "distilgpt2", tiny_model)
    (snapshot / "model.safetensors").resolve().unlink()  # the link stays, its blob is gone
    status = check.status(needs.model_need("distilgpt2"), offline)
    assert not status.ok and status.state == "broken" and "no weights" in status.detail


def test_a_cached_model_whose_tokenizer_does_not_load_is_broken(offline, tiny_model, tmp_path):
    copy = shutil.copytree(tiny_model, tmp_path / "copy")
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        (copy / name).unlink(missing_ok=True)
    put_in_hub_cache(offline.hub, "distilgpt2", copy)
    status = check.status(needs.model_need("distilgpt2"), offline)
    assert not status.ok and status.state == "broken" and "tokenizer" in status.detail


def test_check_finds_a_hub_datasets_prepared_arrow_cache_and_its_split(offline, tmp_path):
    need = needs.data_needs("alpaca", "tatsu-lab/alpaca")[0]
    assert check.status(need, offline).state == "missing"
    prepare_dataset(offline.datasets, "tatsu-lab/alpaca", ALPACA, tmp_path)
    status = check.status(need, offline)
    assert status.ok and "split train" in status.detail, status
    wrong_split = needs.Need("data", "tatsu-lab/alpaca", needs.HUB_DATASET, splits=("test",))
    assert check.status(wrong_split, offline).state == "broken"


def test_what_check_calls_present_is_what_datasets_loads_offline(offline, tmp_path):
    """The layout check accepts is the one ``datasets`` itself reads with the hub out of reach."""
    import subprocess
    import sys

    prepare_dataset(offline.datasets, "tatsu-lab/alpaca", ALPACA, tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(offline.datasets)}
    code = "import datasets; print(len(datasets.load_dataset('tatsu-lab/alpaca', split='train')))"
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith(str(len(ALPACA))), done.stderr


def test_check_finds_one_cached_file_of_a_hub_dataset_repository(offline, tmp_path):
    need = needs.data_needs("sharegpt", SHAREGPT)[0]
    status = check.status(need, offline)
    assert status.state == "missing"
    assert status.fix == ("hf download anon8231489123/ShareGPT_Vicuna_unfiltered "
                          "ShareGPT_V3_unfiltered_cleaned_split.json --repo-type dataset")
    StandInHub(work=tmp_path).file(need.name, need.filename, revision=None, cache_dir=offline.hub)
    assert check.status(need, offline).ok


def test_a_ranker_directory_and_its_backbone_in_the_cache(offline, tmp_path):
    from harness.evaluation import tiny_ranker

    built = tiny_ranker.ensure(tmp_path / "gridlab")
    ranker = tmp_path / "PairRM"
    ranker.mkdir()
    rows = check.run(needs.ranker_needs(str(ranker)), offline).rows
    assert [(n.kind, s.state) for n, s in rows] == [("ranker", "missing"), ("backbone", "missing")]
    assert rows[0][1].fix == f"hf download llm-blender/PairRM --local-dir {ranker}"
    shutil.copy(built / "model.safetensors", ranker / "model.safetensors")
    config = json.loads((built / "config.json").read_text())
    (ranker / "config.json").write_text(json.dumps({**config, "model_name": needs.PAIRRM_BACKBONE}))
    put_in_hub_cache(offline.hub, needs.PAIRRM_BACKBONE, built / "backbone")
    report = check.run(needs.ranker_needs(str(ranker)), offline)
    assert report.ready, report.rows
    assert "deberta-v2 config, tokenizer" in report.rows[1][1].detail


# --- the command: check ---------------------------------------------------------------------------


def test_the_demo_grid_is_ready_offline_with_empty_caches():
    done = invoke(["check", "grids/demo.yaml"], ROOT)
    assert done.code == 0, done.stdout + done.stderr
    assert "Ready" in done.stdout and "tiny-pairrm" in done.stdout
    shown = json.loads(invoke(["check", "grids/demo.yaml", "--format", "json"], ROOT).stdout)
    assert shown["ready"] and shown["missing"] == 0 and shown["fetch"] is None
    assert {n["name"] for n in shown["needs"]} >= {"tiny-gpt2", "tiny-pythia", "tiny-t5", "tiny-pairrm", "demo"}


SEED_MISSING = {
    "seed_replication.yaml": {"distilgpt2", "EleutherAI/pythia-14m", "EleutherAI/pythia-70m", "EleutherAI/pythia-410m",
                              "tatsu-lab/alpaca", "nyu-dice-lab/wildchat50m-rewild-sft-385700",
                              "anon8231489123/ShareGPT_Vicuna_unfiltered/ShareGPT_V3_unfiltered_cleaned_split.json"},
    "seed_replication_peft.yaml": {"gpt2", "t5-small", "tatsu-lab/alpaca"},
    "seed_replication_relu_gelu.yaml": set(),  # pretrain: built from a config, on the standard library's source
}


@pytest.mark.parametrize("name", sorted(SEED_MISSING))
def test_the_seed_grids_check_names_every_missing_piece_and_how_to_fetch_it(name):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the seed grids read MT-Bench from {SHARED_DATA}, which is not here")
    done = invoke(["check", f"grids/{name}", "--format", "json"], ROOT)
    shown = json.loads(done.stdout)
    missing = {n["name"] for n in shown["needs"] if not n["ok"]}
    from harness.evaluation import pairrm

    judged = {str(pairrm.managed_dir()), needs.PAIRRM_BACKBONE} if name == "seed_replication.yaml" else set()
    assert missing == SEED_MISSING[name] | judged  # the real PairRM and its backbone too
    assert done.code == (1 if missing else 0) and shown["ready"] is not bool(missing)
    if missing:
        assert shown["fetch"] == f"gridlab fetch grids/{name}"
        assert all(n["fix"] for n in shown["needs"] if not n["ok"])
        table = invoke(["check", f"grids/{name}"], ROOT, patches={(terminal.console, "width"): 100})
        assert table.code == 1 and f"gridlab fetch grids/{name}" in table.stdout
        assert max(len(line) for line in table.stdout.splitlines() if "│" in line) <= 100
        for piece in missing:
            assert f"  {piece}: " in table.stdout  # each missing piece has its own fetch command line


def test_check_of_an_unreadable_grid_is_one_line_and_exit_2(tmp_path):
    assert_one_line_error(invoke(["check", str(tmp_path / "none.yaml")], tmp_path), "file not found")


# --- the command: fetch, then check --------------------------------------------------------------


def test_fetch_fills_the_caches_and_the_check_then_passes_offline(tmp_path, tiny_model):
    grid = write_grid(tmp_path, HUB_GRID)
    assert invoke(["check", str(grid)], tmp_path).code == 1
    hub = StandInHub({"distilgpt2": tiny_model, "EleutherAI/pythia-14m": tiny_model}, tmp_path)
    StandInHub.calls = []
    done = invoke(["fetch", str(grid)], tmp_path, patches={(fetch, "Hub"): lambda: hub})
    assert done.code == 0, done.stdout + done.stderr
    assert "Ready" in done.stdout and "fetching model distilgpt2" in done.stdout
    # models: config, tokenizer and safetensors only (not every weight format a repository holds)
    assert ("snapshot", "distilgpt2", (*fetch.MODEL_FILES, "*.safetensors")) in StandInHub.calls
    assert ("dataset", "tatsu-lab/alpaca", None) in StandInHub.calls
    again = invoke(["check", str(grid)], tmp_path)
    assert again.code == 0, again.stdout
    StandInHub.calls = []
    assert invoke(["fetch", str(grid)], tmp_path, patches={(fetch, "Hub"): lambda: hub}).code == 0
    assert StandInHub.calls == []  # nothing missing: nothing fetched


def test_fetch_downloads_pairrm_into_an_empty_ranker_directory(offline, tmp_path):
    from harness.evaluation import tiny_ranker

    built = tiny_ranker.ensure(tmp_path / "gridlab")
    pairrm = tmp_path / "pairrm-stand-in"
    pairrm.mkdir()
    shutil.copy(built / "model.safetensors", pairrm / "model.safetensors")
    config = json.loads((built / "config.json").read_text())
    (pairrm / "config.json").write_text(json.dumps({**config, "model_name": needs.PAIRRM_BACKBONE}))
    ranker = tmp_path / "PairRM"
    ranker.mkdir()
    hub = StandInHub({needs.PAIRRM: pairrm, needs.PAIRRM_BACKBONE: built / "backbone"}, tmp_path)
    result = fetch.run(needs.ranker_needs(str(ranker)), caches=offline, hub=hub)
    assert not result.failed
    assert [n.kind for n in result.fetched] == ["ranker", "backbone"]
    assert check.run(needs.ranker_needs(str(ranker)), offline).ready


def test_fetch_without_the_hub_names_what_it_could_not_fetch_in_one_line(tmp_path):
    grid = write_grid(tmp_path, HUB_GRID)
    done = invoke(["fetch", str(grid)], tmp_path, patches={(fetch, "Hub"): UnreachableHub})
    line = assert_one_line_error(done, "could not fetch 4 of 4", "distilgpt2", "EleutherAI/pythia-14m",
                                 "tatsu-lab/alpaca", "ShareGPT_V3_unfiltered_cleaned_split.json")
    assert "hub is reachable" in line
    assert "missing" in done.stdout  # the check after it still shows the table


# --- launch checks before it submits -------------------------------------------------------------


def test_launch_refuses_when_pending_jobs_need_what_is_missing(tmp_path):
    db = f"sqlite:///{tmp_path / 'q.db'}"
    grid = write_grid(tmp_path, HUB_GRID)
    assert invoke(["enqueue", str(grid), "--db", db], tmp_path).code == 0

    def stop(*args, **kwargs):
        from db.errors import GridlabError

        raise GridlabError("reached submission")

    patches = {(launch_mod, "require_slurm"): stop}
    refused = invoke(["launch", str(grid), "--db", db], tmp_path, patches=patches)
    assert_one_line_error(refused, "the pending jobs need 4 piece(s)", "distilgpt2", f"gridlab fetch {grid}",
                          "--skip-check")
    assert "missing" in refused.stdout
    skipped = invoke(["launch", str(grid), "--db", db, "--skip-check"], tmp_path, patches=patches)
    assert_one_line_error(skipped, "reached submission")


def test_launch_of_a_ready_queue_goes_on_to_submit(tmp_path):
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert invoke(["enqueue", str(ROOT / "grids" / "demo.yaml"), "--db", db], tmp_path).code == 0

    def stop(*args, **kwargs):
        from db.errors import GridlabError

        raise GridlabError("reached submission")

    assert_one_line_error(invoke(["launch", "--db", db], tmp_path, patches={(launch_mod, "require_slurm"): stop}),
                          "reached submission")


def test_help_names_the_commands_and_launchs_flag(tmp_path):
    for argv, needle in ((["check", "--help"], "Exit 0: all present; 1: something is missing"),
                         (["fetch", "--help"], "where the hub is reachable"),
                         (["launch", "--help"], "--skip-check"),
                         (["--help"], "gridlab check grids/demo.yaml")):
        done = invoke(argv, tmp_path)
        assert done.code == 0 and needle in " ".join(done.stdout.split()), (argv, done.stdout)
