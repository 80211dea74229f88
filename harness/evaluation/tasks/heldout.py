"""The held-out split for ``gridlab_heldout_perplexity``: read from the JSON Lines file named by
the task's ``heldout_path`` metadata (no datasets cache is written)."""

import json

import datasets


def load(heldout_path=None, **_):
    if not heldout_path:
        raise ValueError("gridlab_heldout_perplexity needs metadata heldout_path (a JSON Lines file of {'text': ...})")
    with open(heldout_path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
