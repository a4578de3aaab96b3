"""Settings of `culture-train data`: which culture, which questions, which answer rule."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataConfig:
    culture: str  # arabic, bengali, ..., turkish, or one (CultureLLM-One)
    output: str
    questions: str | None = None  # augmented questions (this package's or upstream's new_WVQ_*.jsonl)
    rule: str = "majority"  # or mean: the code nearest the mean answer
    include_seeds: bool = True
    tag_country: bool | None = None  # default: only for one
    data_dir: str | None = None
