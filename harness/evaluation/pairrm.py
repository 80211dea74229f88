"""PairRM judging: load a ranker from a local directory, and compare two arms' answers.

A ranker directory has PairRM's layout (``llm-blender/PairRM`` on the hub, or
:mod:`harness.evaluation.tiny_ranker`): llm-blender's ``config.json`` (``ranker_type:
pairranker``), the ranker's weights (``model.safetensors`` or ``pytorch_model.bin``), and a
backbone that ``model_name`` names. Loading never touches the hub: a hub name is refused, and
the backbone must be on this machine, found in this order:

1. ``<dir>/backbone/`` (how the tiny ranker ships its DeBERTa-v2);
2. ``model_name`` as a directory (absolute, or relative to the ranker directory);
3. ``model_name`` (``microsoft/deberta-v3-large`` for PairRM) in the Hugging Face cache.

The real loading path runs: ``llm_blender.Blender().loadranker(dir, model_name=<backbone>)``.

Judging goes per prompt and turn. Turn *t* of a question is judged as the conversation up to
turn *t* (llm-blender's ``compare_conversations``, its documented form for multi-turn
answers), both orders averaged (``[A,B]+[B,A]``) so position bias cancels. The logit is PairRM's
preference for arm a; a positive logit means a wins, and identical conversations are a tie.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.evaluation.errors import ComparisonError, RankerError, RankerUnavailable
from jobs.outputs import Judgment, StoredGeneration

JUDGE = "pairrm"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
DOWNLOAD_HINT = (
    "run `gridlab fetch GRID` where the hub is reachable, or download it yourself (hf download "
    "llm-blender/PairRM --local-dir DIR, and hf download microsoft/deberta-v3-large for its backbone) "
    "and pass DIR, or use tiny-pairrm"
)
#: The real ranker by its hub name: ``judge.ranker: llm-blender/PairRM`` reads it from gridlab's
#: own folder for it (:func:`managed_dir`), which ``gridlab fetch`` fills; nothing downloads it
#: during a job.
HUB_NAME = "llm-blender/PairRM"


def managed_dir(cache_dir: str | Path | None = None) -> Path:
    """Where ``llm-blender/PairRM`` lives on this machine: ``<gridlab cache>/pairrm/llm-blender--PairRM``."""
    from harness.models import tiny

    root = Path(cache_dir) if cache_dir is not None else tiny.default_cache_dir()
    return root / "pairrm" / HUB_NAME.replace("/", "--")


def resolve(name_or_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The directory a ``judge.ranker`` setting names (not ``tiny-pairrm``, which is built)."""
    return managed_dir(cache_dir) if str(name_or_path) == HUB_NAME else Path(name_or_path).expanduser()


@dataclass
class Ranker:
    """A loaded PairRM ranker (llm-blender's ``Blender`` holding it) and where it came from."""

    blender: object
    path: str
    backbone: str

    def compare_conversations(self, conversations_a, conversations_b, *, batch_size: int = 4) -> list[float]:
        if not conversations_a:
            return []
        with _quiet():
            logits = self.blender.compare_conversations(
                conversations_a, conversations_b, batch_size=batch_size, return_logits=True
            )
        return [float(x) for x in logits]


def load(name_or_path: str | Path, *, device: str = "cpu", cache_dir: str | Path | None = None) -> Ranker:
    """Load a PairRM ranker from a local directory (or build ``tiny-pairrm``). Raises
    RankerError, one line, when the path is not a usable ranker."""
    if str(name_or_path) == "tiny-pairrm":
        from harness.evaluation import tiny_ranker

        path = tiny_ranker.ensure(cache_dir)
    else:
        path = resolve(name_or_path, cache_dir)
        if str(name_or_path) == HUB_NAME and not (path / "config.json").is_file():
            raise RankerUnavailable(f"{HUB_NAME} is not on this machine (looked in {path})",
                                    "run `gridlab fetch GRID` where the hub is reachable, then retry the judge job")
    config = _ranker_config(path)
    backbone = _backbone(path, config)
    from harness.evaluation import blender_compat

    llm_blender = blender_compat.blender()
    try:
        with _quiet():
            blender = llm_blender.Blender(llm_blender.BlenderConfig(device=device, use_tqdm=False))
            blender.loadranker(str(path), device=device, model_name=str(backbone), cache_dir=str(path))
    except Exception as exc:  # llm-blender, transformers and safetensors raise many kinds; the user needs one line
        raise RankerError(f"{path}: llm-blender could not load the ranker ({type(exc).__name__}: {_first_line(exc)})",
                          "check that its weights match its config.json and backbone") from None
    return Ranker(blender=blender, path=str(path), backbone=str(backbone))


def _ranker_config(path: Path) -> dict:
    if not path.exists():
        if not str(path).startswith((".", "/", "~")) and str(path).count("/") == 1:
            raise RankerError(f"ranker {str(path)!r} is not a local directory (gridlab never downloads it)", DOWNLOAD_HINT)
        raise RankerError(f"ranker directory {path} not found", DOWNLOAD_HINT)
    if not path.is_dir():
        raise RankerError(f"ranker path {path} is a file, not a ranker directory", "pass the directory that holds config.json")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise RankerError(f"{path} holds no config.json, so it is not a PairRM ranker directory", DOWNLOAD_HINT)
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RankerError(f"{config_file} is not valid JSON ({_first_line(exc)})", DOWNLOAD_HINT) from None
    if not isinstance(config, dict) or config.get("ranker_type") != "pairranker":
        kind = config.get("model_type") if isinstance(config, dict) else None
        what = f"a {kind} model" if kind else "not an llm-blender ranker"
        raise RankerError(f"{path} is {what}, not a PairRM ranker (config.json lacks ranker_type: pairranker)",
                          DOWNLOAD_HINT)
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise RankerError(f"{path} has a ranker config but no weights ({' or '.join(WEIGHT_FILES)})", DOWNLOAD_HINT)
    return config


def _backbone(path: Path, config: dict) -> Path:
    if (path / "backbone" / "config.json").is_file():
        return path / "backbone"
    name = str(config.get("model_name") or "")
    if name:
        candidate = Path(name).expanduser()
        candidate = candidate if candidate.is_absolute() else path / candidate
        if (candidate / "config.json").is_file():
            return candidate
        try:
            from huggingface_hub import snapshot_download

            cached = Path(snapshot_download(name, local_files_only=True))
            if (cached / "config.json").is_file():
                return cached
        except Exception:  # not in the cache (or not a hub name): reported below
            pass
    raise RankerUnavailable(
        f"{path}: the ranker's backbone {name or '(unnamed)'!r} is not on this machine",
        f"put it in {path / 'backbone'}, or {DOWNLOAD_HINT}",
    )


@contextlib.contextmanager
def _quiet():
    """llm-blender prints to stdout, logs a warning for every part it is not asked to load, and
    its config class warns about None fields; none of it is a problem of the user's."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.filterwarnings("ignore", message=r".*non-optional type .* detected when decoding", category=RuntimeWarning)
            yield
    finally:
        logging.disable(previous)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- judging two arms ----------------------------------------------------------------


def pair_answers(
    answers_a: Sequence[StoredGeneration], answers_b: Sequence[StoredGeneration], *, arm_a: int, arm_b: int
) -> list[tuple[StoredGeneration, StoredGeneration]]:
    """Match two arms' answers by (prompt set, question, turn). Raises ComparisonError if the
    arms answered different prompt sets or questions."""
    if not answers_a or not answers_b:
        empty = arm_a if not answers_a else arm_b
        raise ComparisonError(
            f"job {empty} stored no answers to judge",
            "its experiment must call harness.evaluation.hook.evaluate_after_training (see gridlab show)",
        )
    index_a = {(g.prompt_set, g.question_id, g.turn): g for g in answers_a}
    index_b = {(g.prompt_set, g.question_id, g.turn): g for g in answers_b}
    sets_a = sorted({k[0] for k in index_a})
    sets_b = sorted({k[0] for k in index_b})
    if set(sets_a) != set(sets_b):
        raise ComparisonError(
            f"arms answered different prompt sets (job {arm_a}: {', '.join(sets_a)}; job {arm_b}: {', '.join(sets_b)})",
            "give both arms the same eval_prompts so their answers can be compared",
        )
    if index_a.keys() != index_b.keys():
        only = sorted(index_a.keys() ^ index_b.keys())
        raise ComparisonError(
            f"arms answered different questions of the same prompt set ({len(only)} unmatched, first: {only[0]})",
            "re-run the arm whose answers are incomplete",
        )
    pairs = []
    for key in sorted(index_a, key=lambda k: (k[0], _qid_order(k[1]), k[2])):
        a, b = index_a[key], index_b[key]
        if a.prompt != b.prompt:
            raise ComparisonError(f"question {key[1]} turn {key[2]} of {key[0]} was asked differently to the two arms",
                                  "regenerate both arms' answers from the same prompt file")
        pairs.append((a, b))
    return pairs


def judge_pairs(
    ranker: Ranker,
    pairs: Sequence[tuple[StoredGeneration, StoredGeneration]],
    *,
    arm_a: int,
    arm_b: int,
    only: Iterable[tuple[str, str, int]] | None = None,
    batch_size: int = 4,
) -> list[Judgment]:
    """One verdict per pair, or per pair whose (prompt set, question, turn) is in ``only``;
    ``pairs`` holds every turn, since a later turn is judged with its earlier ones."""
    only = None if only is None else set(only)
    by_question: dict[tuple[str, str], dict[int, tuple[StoredGeneration, StoredGeneration]]] = {}
    for a, b in pairs:
        by_question.setdefault((a.prompt_set, a.question_id), {})[a.turn] = (a, b)
    todo, conv_a, conv_b = [], [], []
    for (prompt_set, qid), turns in by_question.items():
        for turn in sorted(turns):
            if only is not None and (prompt_set, qid, turn) not in only:
                continue
            history = [turns[t] for t in sorted(turns) if t <= turn]
            conv_a.append(_conversation([(a.prompt, a.output) for a, _ in history]))
            conv_b.append(_conversation([(b.prompt, b.output) for _, b in history]))
            todo.append((prompt_set, qid, turn))
    logits = ranker.compare_conversations(conv_a, conv_b, batch_size=batch_size)
    verdicts = []
    for (prompt_set, qid, turn), ca, cb, logit in zip(todo, conv_a, conv_b, logits):
        winner = "tie" if ca == cb or logit == 0.0 else ("a" if logit > 0 else "b")
        verdicts.append(Judgment(arm_a=arm_a, arm_b=arm_b, judge=JUDGE, prompt_set=prompt_set, question_id=qid,
                                 turn=turn, winner=winner, logit=logit))
    return verdicts


def _conversation(turns: list[tuple[str, str]]) -> list[dict[str, str]]:
    out = []
    for user, assistant in turns:
        out += [{"role": "USER", "content": user}, {"role": "ASSISTANT", "content": assistant}]
    return out


def _qid_order(qid: str) -> tuple[int, int | str]:
    return (0, int(qid)) if qid.isdigit() else (1, qid)
