"""The deterministic train/validation split.

Conversations are split before tokenisation, so every model in a grid (whatever its tokenizer or
length limit) is trained and validated on the same examples for the same seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def train_validation(items: Sequence[T], validation_share: float, seed: int) -> tuple[list[T], list[T]]:
    """`items` shuffled by `seed` and cut so that about `validation_share` of them validate.

    At least one item is held out whenever `validation_share` > 0 and there are two or more items.
    """
    if not 0.0 <= validation_share < 1.0:
        raise ValueError(f"validation_share is {validation_share}; give a share in [0, 1)")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_validation = round(len(items) * validation_share)
    if validation_share > 0 and len(items) >= 2:
        n_validation = max(1, n_validation)
    validation = sorted(order[:n_validation])
    train = sorted(order[n_validation:])
    return [items[i] for i in train], [items[i] for i in validation]
