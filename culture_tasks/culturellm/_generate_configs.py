"""Write every CultureLLM task and group YAML from manifest.yaml.

    python culture_tasks/culturellm/_generate_configs.py            # (re)write the YAMLs
    python culture_tasks/culturellm/_generate_configs.py --check    # exit 1 if any YAML is stale
    python culture_tasks/culturellm/_generate_configs.py --table DATA_ROOT   # README task table

Output is deterministic: re-running it on an unchanged manifest changes no file. The
``metric_list`` of the two templates is written from ``METRICS`` (with the bootstrap-interval
companions of every metric); the rest of each template is edited by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from culture_tasks import stats, task_generation
from culture_tasks.metadata import with_hints
from culture_tasks.paths import TASKS_DIR

HERE = TASKS_DIR / "culturellm"
MANIFEST = HERE / "manifest.yaml"
SCORING = "culture_tasks.classification"
# (metric, aggregation, higher_is_better); every one also gets its _ci_low/_ci_high companions.
METRICS = {
    "mc": [("f1_macro", "f1_macro", True), ("acc", "share", True)],
    "gen": [("f1_macro", "f1_macro", True), ("acc", "share", True), ("parse_fail_rate", "share", False)],
}
GROUP_METRICS = {variant: [name for name, _, _ in metrics] for variant, metrics in METRICS.items()}
TEMPLATES = {"mc": "_mc_template_yaml", "gen": "_gen_template_yaml"}


@dataclass(frozen=True)
class DatasetEntry:
    culture: str
    name: str
    file: str
    text_field: str
    labels: dict[str, str]
    instruction: str
    drop_labels: list[str] = field(default_factory=list)
    note: str = ""
    max_text_chars: int = 0

    def task(self, variant: str) -> str:
        prefix = "culturellm" if variant == "mc" else "culturellm_gen"
        return f"{prefix}_{self.culture}_{self.name}"


class _ManifestLoader(yaml.SafeLoader):
    """YAML 1.1 reads the label OFF (and NO, Y, ...) as a boolean; here only true/false are."""


_ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ManifestLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


TOP_KEYS = ("max_text_chars", "instructions", "datasets")
ENTRY_KEYS = tuple(DatasetEntry.__dataclass_fields__)


def _check_keys(where: str, item: dict, known: tuple[str, ...]) -> None:
    unknown = [k for k in item if k not in known]
    if unknown:
        raise SystemExit(f"{where}: unknown key(s) {with_hints(unknown, known)}; the keys are {list(known)}")


def _max_text_chars(where: str, value) -> int:
    """A misread cut is silent: ``true`` would cut every text to 1 character, -5 drop the last 5."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SystemExit(f"{where}: max_text_chars must be a whole number >= 0 (0: no cut), got {value!r}")
    return value


def _labels(where: str, labels, drop_labels) -> tuple[dict[str, str], list[str]]:
    """A dropped label that is also listed would be absent from the task and still averaged into its
    macro-F1 (F1 0); two labels shown alike cannot be told apart in a generative answer."""
    if not isinstance(labels, dict) or not labels:
        raise SystemExit(f"{where}: labels must map each label in the file to the words shown "
                         f"({{\"0\": not toxic, \"1\": toxic}}), got {labels!r}")
    if not isinstance(drop_labels, list):
        raise SystemExit(f"{where}: drop_labels must be a list of labels ([\"2\"]), got {drop_labels!r}")
    labels = {str(k): str(v) for k, v in labels.items()}
    drop_labels = [str(x) for x in drop_labels]
    both = [label for label in labels if label in drop_labels]
    if both:
        raise SystemExit(f"{where}: label(s) {both} are both in labels and in drop_labels; keep each in one")
    shown: dict[str, str] = {}
    for label, words in labels.items():
        first = shown.setdefault(words.strip().lower(), label)
        if first != label:
            raise SystemExit(f"{where}: labels {first} and {label} show the same words {words.strip().lower()!r}; "
                             "give each label its own words")
    return labels, drop_labels


def load_manifest(path: Path = MANIFEST) -> list[DatasetEntry]:
    raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_ManifestLoader)  # noqa: S506 (SafeLoader subclass)
    _check_keys(str(path), raw, TOP_KEYS)
    default_cut = _max_text_chars(str(path), raw.get("max_text_chars", 0))
    entries = []
    for i, item in enumerate(raw.get("datasets") or []):
        item = dict(item)
        where = f"{path}: dataset #{i + 1} ({item.get('name', '?')})"
        _check_keys(where, item, ENTRY_KEYS)
        missing = [k for k in ("culture", "name", "file", "text_field", "labels", "instruction") if k not in item]
        if missing:
            raise SystemExit(f"{where} lacks field(s) {missing}")
        item["labels"], item["drop_labels"] = _labels(where, item["labels"], item.get("drop_labels", []))
        item["max_text_chars"] = _max_text_chars(where, item.get("max_text_chars", default_cut))
        entries.append(DatasetEntry(**item))
    names = Counter(e.task("mc") for e in entries)
    duplicated = [n for n, c in names.items() if c > 1]
    if duplicated:
        raise SystemExit(f"{path}: duplicate task names {duplicated}")
    return entries


def _dump(data: dict) -> str:
    return task_generation.dump(data, "_generate_configs.py", "manifest.yaml")


def render(entries: list[DatasetEntry]) -> dict[str, str]:
    """File name -> content for every generated YAML."""
    files: dict[str, str] = {}
    cultures = sorted({e.culture for e in entries})
    for variant in ("mc", "gen"):
        top = "culturellm" if variant == "mc" else "culturellm_gen"
        for e in entries:
            files[f"{e.task(variant)}.yaml"] = _dump(
                {
                    "include": TEMPLATES[variant],
                    "task": e.task(variant),
                    "dataset_kwargs": {
                        "task_name": e.task(variant),
                        "file": e.file,
                        "text_field": e.text_field,
                        "labels": e.labels,
                        "instruction": e.instruction,
                        "drop_labels": e.drop_labels,
                        "max_text_chars": e.max_text_chars,
                    },
                }
            )
        for culture in cultures:
            tasks = [e.task(variant) for e in entries if e.culture == culture]
            group = task_generation.group(f"{top}_{culture}", tasks, GROUP_METRICS[variant])
            files[f"_{top}_{culture}.yaml"] = _dump(group)
        files[f"_{top}.yaml"] = _dump(task_generation.group(top, [f"{top}_{c}" for c in cultures],
                                                            GROUP_METRICS[variant]))
    return files


def render_templates() -> dict[str, str]:
    """The two templates with their ``metric_list`` written from ``METRICS``."""
    files = {}
    for variant, name in TEMPLATES.items():
        block = stats.metric_list_yaml(SCORING, METRICS[variant], intervals=GROUP_METRICS[variant])
        files[name] = stats.with_metric_list((HERE / name).read_text(encoding="utf-8"), block)
    return files


def table(entries: list[DatasetEntry], data_dir: str) -> str:
    from culture_tasks.classification import load_classification

    lines = ["| task | file | labels (words shown) | rows after cleaning |", "|---|---|---|---|"]
    for e in entries:
        ds = load_classification(
            data_dir, task_name=e.task("mc"), file=e.file, text_field=e.text_field,
            labels=e.labels, instruction=e.instruction, drop_labels=e.drop_labels,
            max_text_chars=e.max_text_chars,
        )["test"]
        counts = Counter(ds["raw_label"])
        labels = ", ".join(f"`{k}` {v}" for k, v in e.labels.items())
        sizes = ", ".join(f"{k} {counts[k]}" for k in e.labels)
        lines.append(f"| `{e.task('mc')}` | `{e.file}` | {labels} | {len(ds)} ({sizes}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="report stale files, write nothing")
    parser.add_argument("--table", metavar="DATA_ROOT", help="print the README task table from the data")
    args = parser.parse_args(argv)
    entries = load_manifest()
    if args.table:
        print(table(entries, args.table))
        return 0
    files = {HERE / name: text for name, text in {**render(entries), **render_templates()}.items()}
    owned = [*HERE.glob("*culturellm*.yaml"), *(HERE / name for name in TEMPLATES.values())]
    return task_generation.write(files, owned, args.check)


if __name__ == "__main__":
    sys.exit(main())
