"""Evaluation of trained models: answers to MT-Bench-style prompts with timing, PairRM
head-to-head judging, lm-eval tasks and reference metrics, all stored in the database.

One concept per module:

- :mod:`~harness.evaluation.prompts`: MT-Bench-format prompt files (``prompts/demo.jsonl`` ships);
- :mod:`~harness.evaluation.generation`: answers to both turns, batched, with fixed decoding and timing;
- :mod:`~harness.evaluation.blender_compat`: the shim that lets llm-blender 0.0.2 import on transformers 5;
- :mod:`~harness.evaluation.pairrm`: loading a PairRM ranker from a local directory, and judging two arms;
- :mod:`~harness.evaluation.tiny_ranker`: a tiny random PairRM-shaped ranker built offline (demo and tests);
- :mod:`~harness.evaluation.winrate`: win rates with bootstrap intervals, and the paired view across seeds;
- :mod:`~harness.evaluation.lm_eval_tasks`: lm-evaluation-harness tasks on a model object (``tasks/`` ships a
  held-out perplexity task);
- :mod:`~harness.evaluation.references`: ROUGE and BLEU against reference outputs;
- :mod:`~harness.evaluation.hook`: ``evaluate_after_training``, which a training experiment calls at its end;
- :mod:`~harness.evaluation.tables`: the results as terminal tables (``gridlab compare``).

Heavy imports (torch, transformers, llm-blender, lm-eval) happen inside functions, so that
validating a grid or printing a report stays fast.
"""
