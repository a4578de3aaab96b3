"""Lettered options, the one prompt convention of every multiple-choice task and training example.

Each option is shown as ``A. <text>`` and the model scores (or is trained on) the letter alone,
so every choice is one short token whatever the option's wording. Options may be shown in
another order than the survey's code order (``_reversed`` tasks); ``in_code_order`` maps the
answer distribution back.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np

LETTERS = string.ascii_uppercase


def option_letters(n: int) -> list[str]:
    """The letters of ``n`` options: A, B, ..."""
    if not 0 < n <= len(LETTERS):
        raise ValueError(f"{n} options cannot be lettered A..{LETTERS[-1]}")
    return list(LETTERS[:n])


def lettered_options(options: Sequence[str]) -> str:
    """``A. first`` / ``B. second`` ... one option a line."""
    return "\n".join(f"{letter}. {option}" for letter, option in zip(option_letters(len(options)), options))


def presentation_order(n: int, reversed_options: bool = False) -> list[int]:
    """Presented position -> index in code order: the identity, or reversed."""
    order = list(range(n))
    return order[::-1] if reversed_options else order


def in_code_order(order: Sequence[int], presented: Sequence[float]) -> np.ndarray:
    """Values per presented position, put back in code order (``order`` as ``presentation_order``)."""
    p = np.zeros(len(presented))
    p[list(order)] = presented
    return p
