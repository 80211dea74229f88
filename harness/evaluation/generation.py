"""Answers to a prompt set, with fixed decoding and timing measured the same way for every arm.

Every question is asked in gridlab's prompt template (:mod:`harness.data.template`), tokenised
piece by piece exactly as training tokenises it. Turn 1 of every question is answered first, in
batches in file order; then turn 2, whose prompt holds the question's first turn, the model's own
first answer (closed by its end-of-sequence token) and the second user message.

Decoding is greedy with a fixed ``max_new_tokens``: the settings are recorded with every answer.
``min_new_tokens`` keeps the end-of-sequence token from being chosen until that many tokens are
out (transformers' ``min_new_tokens``; the padding token is held back with it): a small or briefly trained model that learned to stop at
once then still says something, and with ``min_new_tokens == max_new_tokens`` every answer is
exactly ``max_new_tokens`` long, so every arm does the same work and its timing compares.
Timing covers ``model.generate`` only (tokenising and decoding text are excluded), in
``torch.inference_mode``, after an untimed warm-up pass over the first batch (without it the
first timed batch of a process runs several times slower, whichever arm it belongs to). Each
answer's ``latency_s`` is the wall time of the batch it was generated in. Batches are formed in
file order (never sorted by length), so two arms given the same prompts and settings do the
same work in the same batches. Compare timings of arms run on the same kind of machine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.data import template
from harness.data.conversation import Conversation, Turn
from harness.evaluation.prompts import PromptSet, Question
from jobs.outputs import Generation

TEMPLATE = "gridlab-v1"  # harness.data.template's layout; bump if it changes


@dataclass(frozen=True)
class Decoding:
    """Fixed decoding settings (greedy)."""

    max_new_tokens: int = 64
    batch_size: int = 8
    max_prompt_tokens: int = 512
    min_new_tokens: int = 0  # end-of-sequence is held back until this many tokens are out

    def __post_init__(self) -> None:
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(f"min_new_tokens={self.min_new_tokens} must be between 0 and "
                             f"max_new_tokens={self.max_new_tokens}")

    @property
    def fixed_length(self) -> bool:
        """Whether every answer is exactly ``max_new_tokens`` long (end-of-sequence never chosen)."""
        return self.min_new_tokens == self.max_new_tokens

    def record(self) -> dict[str, Any]:
        """What is stored with every answer."""
        return {**asdict(self), "do_sample": False, "num_beams": 1, "template": TEMPLATE}


@dataclass(frozen=True)
class Timing:
    answers: int
    new_tokens: int
    total_s: float  # sum of the timed generate calls
    threads: int
    device: str

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.total_s if self.total_s > 0 else 0.0

    @property
    def mean_latency_s(self) -> float:
        return self.total_s / self.answers if self.answers else 0.0

    def figures(self, prefix: str = "gen_") -> dict[str, float]:
        """Figures for the job's summaries."""
        return {
            f"{prefix}total_s": self.total_s,
            f"{prefix}tokens_per_s": self.tokens_per_s,
            f"{prefix}mean_latency_s": self.mean_latency_s,
            f"{prefix}new_tokens": float(self.new_tokens),
            f"{prefix}answers": float(self.answers),
            f"{prefix}threads": float(self.threads),
        }


@dataclass(frozen=True)
class GenerationResult:
    prompt_set: str
    answers: tuple[Generation, ...]
    timing: Timing


def load_model(name_or_path: str | Path):
    """(model, tokenizer) for a known model name or a directory written by save_pretrained."""
    from harness.models import registry

    loaded = registry.load(name_or_path)
    return loaded.model, loaded.tokenizer


def generate(model, tokenizer, prompt_set: PromptSet, decoding: Decoding = Decoding()) -> GenerationResult:
    """Answer every turn of every question in ``prompt_set``. ``model`` is a model object
    (a transformers or peft model) or a model name/path, in which case ``tokenizer`` may be None."""
    import torch

    if isinstance(model, (str, Path)):
        model, loaded_tokenizer = load_model(model)
        tokenizer = tokenizer or loaded_tokenizer
    if tokenizer is None:
        raise ValueError("generate needs the model's tokenizer")
    runner = _Runner(model, tokenizer, decoding)
    record = decoding.record()
    answers: list[Generation] = []
    first: dict[str, str] = {}
    total_s = 0.0
    new_tokens = 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            runner.warm_up(prompt_set.questions[: decoding.batch_size])
            for turn in range(1, max(len(q.turns) for q in prompt_set.questions) + 1):
                asked = [q for q in prompt_set.questions if len(q.turns) >= turn]
                for start in range(0, len(asked), decoding.batch_size):
                    batch = asked[start : start + decoding.batch_size]
                    conversations = [_conversation(q, turn, first) for q in batch]
                    texts, counts, seconds = runner.run(conversations)
                    total_s += seconds
                    for q, conv, text, count in zip(batch, conversations, texts, counts):
                        if turn == 1:
                            first[q.question_id] = text
                        new_tokens += count
                        answers.append(Generation(
                            prompt_set=prompt_set.name, question_id=q.question_id, category=q.category, turn=turn,
                            prompt=q.turns[turn - 1], output=text, new_tokens=count, latency_s=seconds,
                            decoding=record,
                        ))
    finally:
        model.train(was_training)
    timing = Timing(answers=len(answers), new_tokens=new_tokens, total_s=total_s,
                    threads=torch.get_num_threads(), device=str(runner.device))
    return GenerationResult(prompt_set=prompt_set.name, answers=tuple(answers), timing=timing)


def complete(model, tokenizer, conversations: Sequence[Conversation], decoding: Decoding = Decoding()) -> list[str]:
    """The model's answer to each conversation's final assistant turn (whose content is ignored),
    batched and decoded like :func:`generate`; untimed."""
    import torch

    runner = _Runner(model, tokenizer, decoding)
    prompts = [Conversation(c.turns[:-1] + (Turn("assistant", ""),)) for c in conversations]
    texts: list[str] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(prompts), decoding.batch_size):
                texts += runner.run(prompts[start : start + decoding.batch_size])[0]
    finally:
        model.train(was_training)
    return texts


def _conversation(question: Question, turn: int, first: dict[str, str]) -> Conversation:
    """The conversation up to the user message of ``turn``, ending with an empty assistant turn."""
    turns = [Turn("user", question.turns[0])]
    if turn == 2:
        turns += [Turn("assistant", first[question.question_id]), Turn("user", question.turns[1])]
    return Conversation(tuple(turns + [Turn("assistant", "")]))


class _Runner:
    """Tokenises prompts as training does, pads, calls generate and decodes."""

    def __init__(self, model, tokenizer, decoding: Decoding) -> None:
        import transformers

        self.model = model
        self.tokenizer = tokenizer
        self.decoding = decoding
        config = model.config
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        self.device = next(model.parameters()).device
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        limit = decoding.max_prompt_tokens
        if positions and not self.seq2seq:
            limit = min(limit, positions - decoding.max_new_tokens)
        if limit < 1:
            raise ValueError(f"max_new_tokens={decoding.max_new_tokens} leaves no room for a prompt in {positions} positions")
        self.prompt_limit = limit
        settings = {"do_sample": False, "num_beams": 1, "eos_token_id": self.eos_id, "pad_token_id": self.pad_id}
        if decoding.min_new_tokens:
            settings["min_new_tokens"] = decoding.min_new_tokens
            if self.pad_id != self.eos_id:
                # Padding is never a training target, but with end-of-sequence held back an
                # undertrained model falls to it next: its answer would decode to nothing.
                settings["suppress_tokens"] = [self.pad_id]
        if self.seq2seq:
            settings["decoder_start_token_id"] = config.decoder_start_token_id
        self.config = transformers.GenerationConfig(max_new_tokens=decoding.max_new_tokens, **settings)

    def prompt_ids(self, conversation: Conversation) -> list[int]:
        """Token ids of the prompt, cut from the left to the limit (the end holds the question)."""
        if self.seq2seq:
            ids = self._encode(template.prompt(conversation))
        else:
            ids = []
            turns = conversation.turns
            for i, turn in enumerate(turns):
                ids += self._encode(template.header(turn.role))
                if i == len(turns) - 1:
                    break
                ids += self._encode(turn.content)
                if turn.role == "assistant":
                    ids.append(self.eos_id)
                ids += self._encode(template.SEPARATOR)
        return ids[-self.prompt_limit :]

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def warm_up(self, questions: Sequence[Question]) -> None:
        """One untimed pass over the first batch, so one-off costs (first kernels, buffer
        sizes) fall on no arm's clock."""
        self._generate([self.prompt_ids(_conversation(q, 1, {})) for q in questions])

    def run(self, conversations: list[Conversation]) -> tuple[list[str], list[int], float]:
        prompts = [self.prompt_ids(c) for c in conversations]
        start = time.perf_counter()
        out = self._generate(prompts)
        seconds = time.perf_counter() - start
        texts, counts = [], []
        for row in out.tolist():
            kept = []
            for token in row:
                if token == self.eos_id:
                    kept.append(token)
                    break
                kept.append(token)
            counts.append(len(kept))
            body = kept[:-1] if kept and kept[-1] == self.eos_id else kept
            texts.append(self.tokenizer.decode(body, skip_special_tokens=True).strip())
        return texts, counts, seconds

    def _generate(self, prompts: list[list[int]]):
        """New token ids only (prompt stripped), one row per prompt."""
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            # Causal models pad on the left so every prompt ends where generation starts.
            cols = slice(width - len(p), width) if not self.seq2seq else slice(0, len(p))
            ids[i, cols] = torch.tensor(p, dtype=torch.long)
            mask[i, cols] = 1
        out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                  generation_config=self.config)
        if self.seq2seq:
            return out[:, 1:]  # drop the decoder start token
        return out[:, width:]
