"""Model names users write in a grid, and `load`, which turns one into a model and tokenizer.

Known names are the hub models gridlab supports, the tiny offline variants, the pretrained
testbed (``gridlab/tiny-gpt2-pretrained``, ``gridlab/tiny-pythia-pretrained``: tiny models
pretrained here, :mod:`harness.models.pretrained`), and any local directory written by
`save_pretrained` whose architecture is a supported family.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from db.errors import GridlabError
from jobs import states
from harness.models import families, pretrained, tiny

if TYPE_CHECKING:
    import transformers

# torch and transformers are imported by `load` and for a local directory's config: a grid's
# model names are checked (on every `gridlab enqueue`) with the tables below alone.

HUB = {
    "distilgpt2": families.GPT2,
    "distilbert/distilgpt2": families.GPT2,
    "gpt2": families.GPT2,
    "openai-community/gpt2": families.GPT2,
    "EleutherAI/pythia-14m": families.GPT_NEOX,
    "EleutherAI/pythia-70m": families.GPT_NEOX,
    "EleutherAI/pythia-160m": families.GPT_NEOX,
    "EleutherAI/pythia-410m": families.GPT_NEOX,
    "t5-small": families.T5,
    "google-t5/t5-small": families.T5,
}


class UnknownModel(GridlabError, ValueError):
    """A model name that is neither known nor a directory holding a supported model."""

    outcome = states.OUTCOME_INVALID  # jobs.retry: never retried


class ModelUnavailable(GridlabError, RuntimeError):
    """A model that could not be fetched or read: a hub download that failed (``network``,
    retried with backoff) or a local directory without its files (``invalid``)."""

    def __init__(self, what: str, fix: str | None = None, *, outcome: str = states.OUTCOME_NETWORK) -> None:
        super().__init__(what, fix)
        self.outcome = outcome


class Loaded(NamedTuple):
    model: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase
    family: families.Family


def known_names() -> list[str]:
    return sorted(HUB) + sorted(tiny.TINY) + sorted(pretrained.TESTBED)


def family_of(name_or_path: str | Path) -> families.Family:
    """The family of a known name or local model directory, without loading any weights."""
    name = str(name_or_path)
    if name in tiny.TINY:
        return tiny.TINY[name]
    if name in pretrained.TESTBED:
        return pretrained.family_of(name)
    if name in HUB:
        return HUB[name]
    path = Path(name).expanduser()
    if path.is_dir():
        return _family_of_dir(path)
    raise UnknownModel(
        f"unknown model {name!r}: use one of {', '.join(known_names())}, "
        "or a local directory written by save_pretrained"
    )


def load(
    name_or_path: str | Path, *, cache_dir: str | Path | None = None, local_files_only: bool = False
) -> Loaded:
    """Model, tokenizer and family for a known name or a local model directory.

    Tiny names are built (once) under `cache_dir`, testbed names pretrained there (once, minutes);
    hub names go through
    `from_pretrained`, which uses the Hugging Face cache and needs the hub the first time.
    """
    import torch
    import transformers

    name = str(name_or_path)
    family = family_of(name)
    if name in tiny.TINY:
        source = str(tiny.ensure(name, cache_dir))
    elif name in pretrained.TESTBED:
        source = str(pretrained.ensure(name, cache_dir))
    elif name in HUB:
        source = name
    else:
        source = str(Path(name).expanduser())
    auto = transformers.AutoModelForSeq2SeqLM if family.seq2seq else transformers.AutoModelForCausalLM
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
        # float32 whatever the checkpoint stores (transformers 5 loads the stored dtype by
        # default: Pythia's float16 weights would train in float16); bf16 is a training setting.
        model = auto.from_pretrained(source, local_files_only=local_files_only, dtype=torch.float32)
    except OSError as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        fix = (
            f"if this machine is offline, download it once where the hub is reachable (hf download {name}) "
            "or pass a local directory"
            if name in HUB
            else "check that the directory holds the weight and tokenizer files save_pretrained writes"
        )
        outcome = states.OUTCOME_NETWORK if name in HUB else states.OUTCOME_INVALID
        raise ModelUnavailable(f"could not load {name!r} ({reason}); {fix}", outcome=outcome) from None
    if tokenizer.pad_token is None:
        # GPT-2 and Pythia ship without a pad token; padding positions are masked anyway.
        tokenizer.pad_token = tokenizer.eos_token
    return Loaded(model, tokenizer, family)


def _family_of_dir(path: Path) -> families.Family:
    if not (path / "config.json").is_file():
        raise UnknownModel(f"{path} is a directory but holds no config.json; point at a save_pretrained directory")
    import transformers

    try:
        return families.of_config(transformers.AutoConfig.from_pretrained(path))
    except ValueError as error:
        raise UnknownModel(f"{path}: {error}") from None
