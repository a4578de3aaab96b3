"""Seeded, stratified document samples of the CultureLLM suite, for lm-eval's ``--samples``.

    python -m culture_tasks.sampling --per_culture 20 --seed 0 --output samples.json
    lm_eval --model hf ... --include_path culture_tasks --tasks culturellm --samples samples.json

A sample is sized per culture, not per task: the leaderboard's culture score is the unweighted
mean of its tasks' macro-F1, whose variance is about (variance of one task at k documents) / T
for T tasks; with a budget of N documents per culture split over its T tasks (k = N / T) that is
about the variance of one task at N documents, whatever T. So every culture gets ``per_culture``
documents and its interval about the same width. Within a culture the budget is split evenly over
the tasks (the first tasks in manifest order take the remainder; a task never gets more than it
holds). Within a task the documents are drawn per gold label: one for every label the task has
(the most frequent labels first when the task's share is smaller than its number of labels: at 20 per
culture, 4 of the 58 tasks), the rest in proportion to the labels' frequencies (largest remainder, ``label_quota``). Without that floor a rare
label (4 of 1,000 in ``jigsaw_threat``) would be absent from a small sample, and an absent
label scores F1 = 0, which pulls macro-F1 down however the model answers. With the floor a rare label
holds a larger share of the sample than of the task; the tasks weigh each document by its label's
documents in the task over those in the sample (``classification.design_weights``), so a sample's
macro-F1 and accuracy estimate the complete run's, not the sample's label mix.

The draw is seeded per task (numpy ``Generator`` seeded with ``[seed, crc32(task name)]``), so a
task's documents depend only on the seed, the task and its allocation.

How lm-eval 0.4.13 reads the file: a JSON object ``{task: [document indices]}``, indices being
positions in the task's test split after cleaning (``classification.load_classification``, the
tasks' own loader, gives the labels here). A task missing from the file, or given an empty list,
is evaluated whole; the chosen documents are evaluated in split order and the logged ``doc_id``
is ``indices[position]``, which is the document's index only if the list is sorted, so every list
here is sorted, unique and non-empty. The result file records, per task, ``n-samples``:
``{"original": <documents in the task>, "effective": <documents evaluated>}``; a sampled run
is therefore visibly partial there (``config.limit`` stays null).
"""

from __future__ import annotations

import json
import logging
import sys
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from culture_tasks.atomic import write_text_atomic
from culture_tasks.metadata import check_bool_fields


class SamplingError(ValueError):
    """A sample that cannot be drawn as asked (one line naming the setting)."""


def split_evenly(total: int, capacities: Sequence[int]) -> list[int]:
    """``total`` spread as evenly as possible over strata holding ``capacities`` items.

    Water-filling: every stratum gets the same share, a stratum that holds less keeps what it has
    and its unused share goes to the others; a remainder goes to the first strata with room.
    """
    if total < 0:
        raise SamplingError(f"cannot draw {total} documents")
    if total > sum(capacities):
        raise SamplingError(f"cannot draw {total} documents from strata holding {sum(capacities)}")
    out = [0] * len(capacities)
    left = total
    while left:
        open_ = [i for i, c in enumerate(capacities) if out[i] < c]
        share = max(left // len(open_), 1)
        for i in open_:
            take = min(share, capacities[i] - out[i], left)
            out[i] += take
            left -= take
            if not left:
                break
    return out


def label_quota(n: int, counts: Sequence[int]) -> list[int]:
    """Documents per label for ``n`` from a task whose labels occur ``counts`` times.

    One for each label that occurs (the most frequent first when ``n`` is smaller than the number
    of such labels), the rest in proportion to the documents each label has left, by largest
    remainder (ties to the earlier label), never more than a label holds.
    """
    if n > sum(counts):
        raise SamplingError(f"cannot draw {n} documents from {sum(counts)}")
    present = sorted((i for i, c in enumerate(counts) if c > 0), key=lambda i: (-counts[i], i))
    quota = [0] * len(counts)
    for i in present[:n]:
        quota[i] = 1
    left = n - sum(quota)
    while left:
        room = [c - q for c, q in zip(counts, quota)]
        total_room = sum(room)
        exact = [left * r / total_room for r in room]
        add = [min(int(e), r) for e, r in zip(exact, room)]
        rest = left - sum(add)
        order = sorted((i for i in range(len(counts)) if room[i] > add[i]), key=lambda i: (-(exact[i] - int(exact[i])), i))
        for i in order[:rest]:
            add[i] += 1
        quota = [q + a for q, a in zip(quota, add)]
        left -= sum(add)
    return quota


def task_rng(seed: int, task: str) -> np.random.Generator:
    """The task's own random stream: the same documents whatever other tasks are sampled."""
    return np.random.default_rng([int(seed), zlib.crc32(task.encode("utf-8"))])


def draw_task(labels: Sequence, n: int, seed: int, task: str) -> list[int]:
    """``n`` sorted document indices of one task, stratified by gold label (``label_quota``)."""
    by_label: dict = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    order = list(by_label)  # labels in order of first appearance: fixed by the data
    quota = label_quota(n, [len(by_label[k]) for k in order])
    rng = task_rng(seed, task)
    chosen: list[int] = []
    for label, k in zip(order, quota):
        if k:
            chosen.extend(int(i) for i in rng.choice(by_label[label], size=k, replace=False))
    return sorted(chosen)


def check_draw(per_culture: int, seed: int) -> None:
    """The settings of a draw, checked before the suite is read: numpy seeds no negative number, and its own
    error ("expected non-negative integer") named no setting."""
    if per_culture < 1:
        raise SamplingError(f"--per_culture must be at least 1, got {per_culture}")
    if seed < 0:
        raise SamplingError(f"--seed must be 0 or more, got {seed}")


def draw(suite: Mapping[str, tuple[str, Sequence]], per_culture: int, seed: int) -> dict[str, list[int]]:
    """``{task: sorted indices}`` for lm-eval's ``--samples``: ``per_culture`` documents per
    culture, split evenly over its tasks, each task stratified by label.

    ``suite`` maps each task (in manifest order) to ``(culture, gold labels of its documents)``.
    """
    check_draw(per_culture, seed)
    cultures: dict[str, list[str]] = defaultdict(list)
    for task, (culture, _) in suite.items():
        cultures[culture].append(task)
    out = {}
    for culture, tasks in cultures.items():
        if per_culture < len(tasks):
            raise SamplingError(f"--per_culture {per_culture} is below the {len(tasks)} tasks of culture {culture}: "
                                "every task needs a document; raise --per_culture")
        sizes = [len(suite[t][1]) for t in tasks]
        if per_culture > sum(sizes):
            raise SamplingError(f"--per_culture {per_culture} is more than the {sum(sizes)} documents of culture "
                                f"{culture}; lower --per_culture")
        for task, n in zip(tasks, split_evenly(per_culture, sizes)):
            out[task] = draw_task(suite[task][1], n, seed, task)
    return out


def suite_labels(data_dir: str | None = None, cultures: Sequence[str] | None = None) -> dict[str, tuple[str, list[str]]]:
    """``{task: (culture, gold labels)}`` of the multiple-choice suite (or of ``cultures``), read
    by the tasks' own loader, so that indices are positions in the split lm-eval evaluates."""
    from culture_tasks.classification import load_classification
    from culture_tasks.culturellm._generate_configs import load_manifest

    suite = {}
    for e in load_manifest():
        if cultures is not None and e.culture not in cultures:
            continue
        ds = load_classification(data_dir, task_name=e.task("mc"), file=e.file, text_field=e.text_field,
                                 labels=e.labels, instruction=e.instruction, drop_labels=e.drop_labels,
                                 max_text_chars=e.max_text_chars)["test"]
        suite[e.task("mc")] = (e.culture, list(ds["raw_label"]))
    return suite


@dataclass
class SampleConfig:
    """Settings of ``python -m culture_tasks.sampling``."""

    output: str = field(metadata={"help": "JSON file to write ({task: [indices]}), for lm_eval --samples"})
    per_culture: int = field(default=20, metadata={"help": "documents per culture, split evenly over its tasks"})
    seed: int = field(default=0, metadata={"help": "seed of the draw"})
    data_dir: str | None = field(default=None, metadata={"help": "data root (default: $CULTURE_DATA_DIR)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --output"})

    def __post_init__(self):
        check_bool_fields(self)
        check_draw(self.per_culture, self.seed)


def suite_files(data_dir: str | None = None) -> list[Path]:
    """The data files the draw reads: inputs the output may never replace."""
    from culture_tasks.culturellm._generate_configs import load_manifest
    from culture_tasks.data_root import data_file

    return [data_file(f"culturellm/{e.file}", data_dir) for e in load_manifest()]


def parser():
    """Flags (and ``--config`` YAML) from the fields of ``SampleConfig``."""
    from culture_tasks.cli_args import ConfigParser

    return ConfigParser([SampleConfig], prog="python -m culture_tasks.sampling", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    from culture_tasks.cli_args import ConfigError
    from culture_tasks.data_root import resolve_data_root
    from culture_tasks.outputs import OutputError, OutputLock, claim_output, error_line, os_error_line

    config_parser = parser()
    try:
        (cfg,) = config_parser.parse(argv)
        inputs = [config_parser.config_file, *suite_files(cfg.data_dir), resolve_data_root(cfg.data_dir)]
        with OutputLock.for_file(cfg.output):  # a second draw into the same file meanwhile is refused
            claim_output(cfg.output, overwrite=cfg.overwrite, inputs=inputs, folder=False, resumable=False)
            logger = logging.getLogger("culture_tasks")
            level = logger.level
            logger.setLevel(logging.ERROR)  # row counts: lm-eval logs them again
            try:
                samples = draw(suite_labels(cfg.data_dir), cfg.per_culture, cfg.seed)
            finally:  # a caller in the same process (a test, a notebook) keeps its own logging
                logger.setLevel(level)
            lines = ",\n".join(f"{json.dumps(task)}: {json.dumps(indices)}" for task, indices in samples.items())
            write_text_atomic(Path(cfg.output), "{\n" + lines + "\n}\n")
    except (ConfigError, OutputError, SamplingError, FileNotFoundError, ValueError) as err:
        print(error_line("culture_tasks.sampling", err), file=sys.stderr)
        return 2
    except OSError as err:
        print(os_error_line("culture_tasks.sampling", err), file=sys.stderr)
        return 2
    n = sum(map(len, samples.values()))
    print(f"wrote {cfg.output}: {n} documents of {len(samples)} tasks (seed {cfg.seed}, {cfg.per_culture} per culture)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
