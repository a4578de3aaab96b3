"""Held-out evaluation of the CultureLLM trainer: k-fold cross-validation over the WVS seed questions.

Scoring an adapter on the 50 questions whose paraphrases it was trained on mixes memorisation
with generalisation. Here the seed questions are split into ``k`` seeded folds by question id;
every training row (a seed wording or a paraphrase) carries its seed's ``q_id`` (``culture-train
data`` writes it), so a paraphrase always sits in its seed's fold; a row worded as another seed
question (``check_wordings``) is refused, as it would train a fold on its held-out prompt. For each
fold a LoRA adapter is trained (``trainers.lora.train``, the ``lora`` command's settings) on the
rows of the other k-1 folds, and the held-out fold's original questions are scored through the plain ``wvs_<country>``
tasks restricted with the ``questions`` metadata key, so each held-out figure is an ``lm_eval``
command anyone can rerun (written into ``kfold.json``). The base model is scored once on every
question. Per question the held-out score of the adapter that never saw it is paired with the
base model's, and the paired bootstrap (``culture_tasks.stats.paired_bootstrap``) gives the
difference's interval and p-value, resampling whole questions (the countries of a question share
its prompt, so its documents are not independent); the in-sample figure (each question scored by the k-1
adapters that were trained on it, averaged) stands beside it for contrast.

Output folder: ``base.json`` (the base model's per-question scores), ``fold-<i>/train.jsonl``,
``fold-<i>/adapter/`` and ``fold-<i>/result.json`` (written last: a fold with it is finished and
``--resume`` skips it), ``kfold.json`` and ``kfold.md``; ``kfold_settings.json`` holds the settings
a resumed run must share.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from culture_tasks import provenance, stats
from culture_tasks.atomic import write_text_atomic
from culture_tasks.cli_args import DTYPES, check_device, check_dtype, warn_half_precision
from culture_tasks.data_root import resolve_data_root
from culture_tasks.jsonl import read_jsonl_lines
from culture_tasks.metadata import check_bool_fields
from culture_tasks.outputs import (OutputLock, check_settings, claim_output, file_digest, load_settings,
                                   remove_killed_writes, same_folder_content, save_settings, set_aside_around,
                                   settings_differences)
from culture_tasks.fingerprints import as_recorded
from culture_tasks import paths
from culture_tasks.prompts import LETTERS
from culture_tasks.survey.wvs import load_questions
from trainers.cultures import CULTURE_COUNTRIES, ONE, culture_key
from trainers.lora import (CHECKPOINTS, LATER_SETTINGS, RUN_SETTINGS, LoraTrainConfig, TrainingError,
                           adapter_problem, asked_with_persona, check_target_modules, encode_for, global_batch,
                           harness_encoder, load_tokenizer, read_examples, row_cultures, run_settings, system_messages,
                           uses_chat)
from trainers.questions import normalise, seed_wordings

log = logging.getLogger("trainers")
SETTINGS = "kfold_settings.json"
RESULT = "result.json"  # in fold-<i>/: written last, marks the fold finished
WRITTEN = (SETTINGS, "base.json", "kfold.json", "kfold.md")  # in the output folder, each written atomically
FOLD_WRITTEN = ("train.jsonl", RESULT)  # in fold-<i>/ (its adapter/ is the lora command's)
METRICS = ("wvs_majority", "wvs_jsd", "wvs_w1")
LABELS = {"wvs_majority": "WVS majority", "wvs_jsd": "WVS 1−JSD", "wvs_w1": "WVS 1−W1"}
# settings that change neither the folds, the adapters nor the float32 scores: they may differ on --resume of a
# float32 run; in half precision the batch size and device move the scores, and they are compared too
NOT_DEFINING = ("eval_batch_size", "eval_device")
QUESTION_ID = re.compile(r"[1-9][0-9]*")  # a row's q_id: its seed question's number, as `culture-train data` writes it


@dataclass
class KFoldConfig(LoraTrainConfig):
    """The ``lora`` command's settings (each fold's training) plus the folds and the evaluation."""

    data: list[str] = field(metadata={
        "help": "training JSONL file(s) from `culture-train data` (every row names its seed question, q_id)"})
    output: str = field(metadata={
        "help": "folder of the cross-validation: fold-<i>/ (training rows, adapter, scores), kfold.json, kfold.md"})
    resume: bool = field(default=False, metadata={
        "help": "continue the run in --output: finished folds are skipped, a fold's training continues from its "
                "last checkpoint"})
    keep_checkpoints: bool = field(default=False, metadata={
        "help": "keep each fold's checkpoints (fold-<i>/adapter/checkpoints) after its training"})
    merge: bool = field(default=False, metadata={
        "help": "not available here (an error): the cross-validation keeps only the fold adapters"})
    folds: int = field(default=5, metadata={"help": "number of folds k (each question is held out once)"})
    fold_seed: int = field(default=0, metadata={"help": "seed of the assignment of questions to folds"})
    data_dir: str | None = field(default=None, metadata={"help": "data root (default: $CULTURE_DATA_DIR)"})
    eval_device: str | None = field(default=None, metadata={
        "help": "torch device of the lm_eval scoring (default: cuda where available, else cpu)"})
    eval_dtype: str = field(default="float32", metadata={
        "help": "dtype of the model in the lm_eval scoring", "choices": list(DTYPES)})
    eval_batch_size: int = field(default=16, metadata={"help": "lm_eval batch size"})

    def __post_init__(self):
        super().__post_init__()
        if self.folds < 2:
            raise ValueError(f"--folds must be at least 2, got {self.folds}")
        if self.fold_seed < 0:  # numpy refuses it when the folds are dealt, in a line naming no flag
            raise ValueError(f"--fold-seed must be a non-negative whole number, got {self.fold_seed}")
        if self.eval_batch_size < 1:
            raise ValueError("eval_batch_size must be at least 1")
        if self.merge:
            raise ValueError("--merge: the cross-validation keeps only the fold adapters; train the final model "
                             "with `culture-train lora --merge`")
        check_dtype(self.eval_dtype, "--eval-dtype")
        if self.eval_device:
            check_device(self.eval_device, "--eval-device")

    def fold_training(self, data: Path, output: Path, resume: bool) -> LoraTrainConfig:
        """The ``lora`` settings of one fold: these settings, the fold's rows and adapter folder."""
        own = {f.name: getattr(self, f.name) for f in fields(LoraTrainConfig)}
        return LoraTrainConfig(**{**own, "data": [str(data)], "output": str(output), "resume": resume,
                                  "overwrite": not resume, "merge": False})


def assign_folds(q_ids, k: int, seed: int) -> list[list[str]]:
    """``k`` folds of the question ids: a seeded permutation dealt round-robin, so fold sizes
    differ by at most one; each fold sorted by id. Depends only on the set of ids, ``k`` and ``seed``."""
    ids = sorted({str(q) for q in q_ids}, key=int)
    if not 2 <= k <= len(ids):
        raise TrainingError(f"--folds {k}: need 2 <= k <= {len(ids)} (the number of questions with a label)")
    order = np.random.default_rng(seed).permutation(len(ids))
    return [sorted((ids[j] for j in order[i::k]), key=int) for i in range(k)]


# --------------------------------------------------------------------------- inputs


def _culture(rows: list[dict], data: list[str]) -> str:
    missing = sum(1 for r in rows if r.get("q_id") in (None, "") or not r.get("culture"))
    if missing:
        raise TrainingError(f"{', '.join(data)}: {missing} row(s) without q_id or culture; the folds need each row's "
                            "seed question and culture: make the file with `culture-train data`")
    cultures = set(row_cultures(rows))
    if len(cultures) > 1 and cultures != set(CULTURE_COUNTRIES):
        raise TrainingError(f"{', '.join(data)}: rows of the cultures {', '.join(sorted(cultures))}; a cross-validation "
                            "covers one culture or all of them (`culture-train data --culture one`): make one file "
                            "per culture")
    return ONE if len(cultures) > 1 else cultures.pop()


def check_q_ids(data: list[str]) -> None:
    """Every row's q_id names its seed question by number, as `culture-train data` writes it ("27"): the folds
    are dealt and sorted by it, where "Q27" or 27.0 failed with a bare int() error (a missing q_id: ``_culture``)."""
    for name in data:
        for line_no, row in read_jsonl_lines(name):
            q = row.get("q_id")
            if q in (None, "") or (type(q) is int and q > 0) or (isinstance(q, str) and QUESTION_ID.fullmatch(q)):
                continue
            raise TrainingError(f"{name}:{line_no}: field 'q_id' is {json.dumps(q)}; expected the number of a WVS "
                                'question, such as "27" (as `culture-train data` writes it): fix the row, or build the '
                                "file again with `culture-train data`")


def row_wording(row: dict) -> str:
    """The question a training row asks (normalised, as ``trainers.questions`` compares wordings): its prompt
    without the persona line and the options."""
    from culture_tasks.survey.tasks import PERSONA_TAIL, persona_of

    prompt = [m["content"] for m in row["messages"] if m.get("role") == "user"][-1]
    if persona_of(prompt) is not None:
        prompt = prompt.partition(PERSONA_TAIL)[2]
    return normalise(prompt.rpartition("\n\nOptions:\n")[0] or prompt)


def check_wordings(data: list[str], questions) -> None:
    """No row asks another seed question's wording, and no wording is asked under two seed questions: the
    folds split the rows by q_id, so such a row would stay in the training of the fold that holds that
    question out, and its adapter would be scored on a prompt it was trained on. Refused before any work
    (dropping the rows would train on other rows than the files hold); `culture-train data` drops them."""
    seed_of = seed_wordings(questions)
    first: dict[str, tuple[str, str]] = {}  # wording -> (q_id, file:line) of its first row
    fix = "build the rows again with `culture-train data` (it drops such wordings, counted), or remove the row"
    for name in data:
        for line_no, row in read_jsonl_lines(name):
            wording, q_id, where = row_wording(row), str(row["q_id"]), f"{name}:{line_no}"
            owner = seed_of.get(wording, q_id)
            if owner != q_id:
                raise TrainingError(f"{where}: a row of Q{q_id} asks seed question Q{owner}'s wording, so the fold "
                                    f"holding Q{owner} out would train on its prompt; {fix}")
            seen_q, seen_at = first.setdefault(wording, (q_id, where))
            if seen_q != q_id:
                raise TrainingError(f"{where}: a row of Q{q_id} asks the wording of a row of Q{seen_q} ({seen_at}), "
                                    f"so the fold holding one of them out would train on it; {fix}")


def _persona(rows: list[dict], data: list[str]) -> bool:
    """Whether the rows ask with the persona line: the held-out questions are scored as trained."""
    asked = asked_with_persona(rows)
    if len(asked) > 1:
        raise TrainingError(f"{', '.join(data)}: some rows ask with the persona line naming the country and some "
                            "without; the held-out questions can be scored only one way: build the rows with one "
                            "--tag-country setting")
    return asked.pop()


def check_no_system_message(rows: list[dict], data: list[str]) -> None:
    """The held-out questions are scored as the wvs tasks ask them, without a system message: rows that start
    with one would train on a context no fold's scoring asks, so they are refused before any work."""
    found = sorted(m for m in system_messages(rows) if m is not None)
    if found:
        raise TrainingError(f"{', '.join(data)}: rows start with a system message ({found[0]!r}), which the wvs tasks "
                            "the folds are scored on do not ask; build the rows with `culture-train data`, or remove "
                            "the system messages")


def survey_tasks(culture: str, persona: bool | None = None) -> list[tuple[str, object]]:
    """(wvs task, country) for each country of the culture, as ``evaluation_tasks`` names them."""
    from trainers.cultures import countries_of, evaluation_tasks

    tasks = [t for t in evaluation_tasks(culture, persona) if t.startswith("wvs_")]
    countries = countries_of(culture)
    assert [t.split("_", 1)[1].removesuffix("_persona") for t in tasks] == [c.slug for c in countries]
    return list(zip(tasks, countries))


def answered_questions(countries, data_dir: str | None) -> dict[str, dict[str, np.ndarray]]:
    """Per country slug, the questions its respondents answered (the documents its task has), each
    with its answer distribution in ascending code order."""
    from culture_tasks.survey.wvs import load_questions
    from trainers.examples import country_answers

    questions = load_questions(data_dir)
    return {c.slug: country_answers(c, questions, data_dir).distributions for c in countries}


def survey_digests(countries, data_dir: str | None) -> dict[str, str]:
    """The content of the survey files the folds are scored on (the questions and each country's
    answers), by their place in the data root: a resume against other answers is refused, whatever
    folder they sit in."""
    from culture_tasks.data_root import data_file
    from culture_tasks.survey.wvs import QUESTIONS_FILE
    from trainers.examples import country_csv

    files = {QUESTIONS_FILE: data_file(QUESTIONS_FILE, data_dir)}
    files.update({f"culturellm/{c.wvs_csv}": country_csv(c, data_dir) for c in countries})
    return {name: file_digest(path) for name, path in files.items()}


# --------------------------------------------------------------------------- scoring


def lm_eval_command(cfg: KFoldConfig, adapter: Path | None, tasks: list[str], questions: list[str] | None,
                    chat: bool) -> str:
    """The plain ``lm_eval`` command that gives these scores (the project's one command builder,
    plus the per-document log the scores are read from). The data root is named in full even when it came
    from $CULTURE_DATA_DIR: a shell without that variable, or with another root, scores other data. The batch
    size and device are the scoring's: in half precision lm_eval's defaults (batch 1) give other scores."""
    meta = {"data_dir": str(resolve_data_root(cfg.data_dir)),
            **({"questions": [int(q) for q in questions]} if questions else {})}
    return paths.lm_eval_command(cfg.model, tasks, adapter=adapter, metadata=meta, dtype=cfg.eval_dtype, chat=chat,
                                 batch_size=cfg.eval_batch_size, device=eval_device(cfg)) \
        + " --log_samples --output_path <results>"


def defining_settings(cfg: KFoldConfig) -> dict:
    """What a resumed run must share with the run it continues: the training's settings and the scoring's;
    the lm_eval batch size, device (as resolved) and its kernels only in half precision, where they move the
    scores (float32 scores do not depend on them: tested), so that base.json and the folds are scored alike.
    The data root the folds are scored on is recorded as named (``lora`` leaves it out: it trains on the rows
    alone); ``run_kfold`` adds the digests of its survey files, by which it is compared (``_recorded_by_content``)."""
    settings = {k: v for k, v in run_settings(cfg).items() if k not in NOT_DEFINING}
    return {**settings, "data_dir": cfg.data_dir,
            **scoring_settings(cfg.eval_dtype, cfg.eval_batch_size, eval_device(cfg))}


def scoring_settings(dtype: str, batch_size: int, device: str) -> dict:
    """The lm_eval batch size, device and kernels where they move the scores (half precision; float32 scores do
    not depend on them: tested), for the settings a continued run compares, so that scores made before and
    after a restart are alike; none in float32."""
    return provenance.rounding_settings(dtype, batch_size, device, prefix="eval_")


def eval_device(cfg: KFoldConfig) -> str:
    """The lm_eval scoring's device: --eval-device, else cuda where available, else cpu."""
    import torch

    return cfg.eval_device or ("cuda" if torch.cuda.is_available() else "cpu")


def score(cfg: KFoldConfig, adapter: Path | None, tasks: list[str], questions: list[str] | None, chat: bool) -> dict:
    """Per task and question the WVS metrics lm-eval logs for each document, and its aggregates."""
    import lm_eval

    from culture_tasks.paths import task_manager

    meta = {**({"data_dir": cfg.data_dir} if cfg.data_dir else {}), **({"questions": questions} if questions else {})}
    out = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={cfg.model},dtype={cfg.eval_dtype}" + (f",peft={adapter}" if adapter else ""),
        tasks=tasks, task_manager=task_manager(meta), device=eval_device(cfg), batch_size=cfg.eval_batch_size,
        apply_chat_template=chat, log_samples=True, bootstrap_iters=0)
    per_question = {t: {str(s["doc"]["q_id"]): {m: float(s[m]) for m in METRICS} for s in out["samples"][t]}
                    for t in tasks}
    check_finite_scores(per_question, cfg, adapter)
    aggregates = {t: {k.split(",")[0]: v for k, v in out["results"][t].items()
                      if k.split(",")[0] in {m + s for m in METRICS for s in ("", *stats.CI_SUFFIXES)}}
                  for t in tasks}
    return {"scores": per_question, "lm_eval": aggregates,
            "command": lm_eval_command(cfg, adapter, tasks, questions, chat)}


def check_finite_scores(per_question: dict, cfg: KFoldConfig, adapter: Path | None) -> None:
    """A NaN or infinite score (a float16 overflow, a NaN weight) would be saved and pooled into "–" cells of
    a run that reads as finished: it stops the run, naming the model or adapter, the metric and the fix,
    before the scores are written."""
    bad = {(t, m): sum(not np.isfinite(v[m]) for v in qs.values()) for t, qs in per_question.items() for m in METRICS}
    (task, metric), count = max(bad.items(), key=lambda kv: kv[1], default=((None, None), 0))
    if not count:
        return
    who = f"the adapter {adapter}" if adapter else f"the base model {cfg.model}"
    raise TrainingError(f"{who} gives a NaN or infinite {metric} on {count} of {len(per_question[task])} questions "
                        f"of {task} in --eval-dtype {cfg.eval_dtype}, so its scores would be NaN; they are not written: "
                        f"{_nonfinite_fix(cfg, adapter)}")


def _nonfinite_fix(cfg: KFoldConfig, adapter: Path | None) -> str:
    """What to do about scores that are not finite: the wording of ``stats.nonfinite_model_fix`` (and of the
    steering report for an adapter), under this command's flags (--eval-dtype is a setting of the run)."""
    half = cfg.eval_dtype != "float32"
    overflow = f"run again with --eval-dtype float32 and --overwrite (it may overflow in {cfg.eval_dtype})"
    if adapter is None:
        return overflow if half else stats.nonfinite_model_fix("float32")
    return (f"check its weights (a diverged training?): remove {adapter} and run again with --resume to train the "
            "fold again" + (f", or {overflow}" if half else ""))


def _check_fold_examples(cfg: KFoldConfig, rows: list[dict], folds: list[list[str]]) -> bool:
    """What each fold's ``lora`` training decides on the tokenizer before its weights load, decided here for every
    fold before the base model is scored: the chat template where the tokenizer has one (``uses_chat``), and some
    of the fold's rows within --max-length (``encode_for``). Whether the folds train through the chat template."""
    tokenizer = load_tokenizer(cfg)
    chat = uses_chat(cfg, tokenizer)
    lm = harness_encoder(cfg, tokenizer)
    for index, held in enumerate(folds, start=1):
        try:
            encode_for(cfg, tokenizer, fold_rows(rows, held), lm)
        except TrainingError as err:
            raise TrainingError(f"fold {index} (held out: Q{', Q'.join(held)}): {err}") from None
    return chat


# --------------------------------------------------------------------------- one fold


def fold_rows(rows: list[dict], held_out: list[str]) -> list[dict]:
    """The training rows of a fold: every row whose seed question is not held out."""
    out = set(held_out)
    return [r for r in rows if str(r["q_id"]) not in out]


def _train_fold(cfg: KFoldConfig, folder: Path, rows: list[dict]) -> dict:
    """Train (or resume, or reuse) the fold's adapter; its training summary."""
    from trainers.lora import remove_finished_checkpoints, train

    adapter = folder / "adapter"
    data = folder / "train.jsonl"
    write_text_atomic(data, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    if (adapter / "training.json").is_file():  # written once the training has finished
        done = json.loads((adapter / "training.json").read_text(encoding="utf-8"))
        _check_fold_adapter(done, cfg.fold_training(data, adapter, True), adapter)
        remove_finished_checkpoints(adapter, cfg.keep_checkpoints)
        return done
    resume = (adapter / CHECKPOINTS / RUN_SETTINGS).is_file()
    return train(cfg.fold_training(data, adapter, resume))


def _check_fold_adapter(done: dict, fold: LoraTrainConfig, adapter: Path) -> None:
    """A finished adapter in a fold's folder is reused only if its training.json records this fold's rows, model
    and ``lora`` settings: one trained there by another run while this one was stopped is not the fold's (on
    rows the fold holds out, say). Settings added to ``lora`` after the adapter was trained are not compared."""
    given = run_settings(fold)  # what a lora --resume compares; training.json holds its config, rows and model
    saved = {**done.get("config", {}), **{k: done.get(k) for k in ("data_sha256", "model_fingerprint")}}
    diff = settings_differences(saved, as_recorded(saved, given), [k for k in given if k in saved])
    if diff:
        raise TrainingError(f"--resume: {adapter / 'training.json'} is not this fold's adapter: it was trained with "
                            f"other rows or settings ({'; '.join(diff)}); remove {adapter} and run again with --resume "
                            "to train the fold, or pass --overwrite")


def fold_folder(out: str | Path, index: int) -> Path:
    return Path(out) / f"fold-{index}"


def run_fold(cfg: KFoldConfig, index: int, folds: list[list[str]], rows: list[dict], tasks, answered, chat) -> dict:
    folder = fold_folder(cfg.output, index)
    held_out = folds[index - 1]
    train_rows = fold_rows(rows, held_out)
    trained = sorted({str(r["q_id"]) for r in train_rows}, key=int)  # in-sample: what the adapter saw
    training = _train_fold(cfg, folder, train_rows)
    result = {"fold": index, "held_out": held_out, "trained": trained,
              "training": {k: training[k] for k in ("examples", "steps", "train_loss", "seconds")}}
    for part, questions in (("held_out_scores", held_out), ("in_sample_scores", trained)):
        names = [t for t, c in tasks if answered[c.slug].keys() & set(questions)]
        result[part] = score(cfg, folder / "adapter", names, questions, chat) if names else \
            {"scores": {}, "lm_eval": {}, "command": None}
    write_text_atomic(folder / RESULT, json.dumps(result, indent=1))
    return result


# --------------------------------------------------------------------------- pooling


def _by_doc(scores: dict) -> dict:
    """{(task, q_id): metrics} from {task: {q_id: metrics}}."""
    return {(t, q): v for t, qs in scores.items() for q, v in qs.items()}


def compare(base: dict, other: dict, keys: list) -> dict:
    """Per metric: base and adapter means over the documents ``keys`` ((task, q_id)) and the paired
    bootstrap of adapter - base over their questions (no interval or p-value, None, for a single
    question)."""
    out = {}
    questions = [q for _, q in keys]
    for m in METRICS:
        a, b = [base[k][m] for k in keys], [other[k][m] for k in keys]
        share = m == "wvs_majority"
        out[m] = {"base": stats.mean(a), "base_ci": level_ci(questions, a, share), "adapter": stats.mean(b),
                  "adapter_ci": level_ci(questions, b, share), **_paired(questions, a, b), "documents": len(keys)}
    return out


def level_ci(questions: list[str], values: list[float], share: bool = False) -> list:
    """The 95 % bootstrap interval of a mean over documents, resampling whole questions as ``_paired`` does;
    ``[None, None]`` for fewer questions than an interval needs (``stats.enough_items``). ``share``: the values are
    0 / 1 (majority agreement, 1/2 for a tie), and every document alike at one end gets the exact interval of its
    questions (``stats.cluster_alike_ci``), not the point every resample gives."""
    return _ci(stats.cluster_share_mean if share else stats.cluster_mean, stats.cluster_sums(questions, values))


def _ci(aggregate, items) -> list:
    low, high = stats.bootstrap_ci(aggregate, items)
    return [low, high] if np.isfinite(low) and np.isfinite(high) else [None, None]


def backfill_level_intervals(report: dict) -> dict:
    """A ``kfold.json`` written before the base and adapter means had intervals, given them: recomputed from its
    per-question scores as ``pool`` computes them (the in-sample side of a fold, which only its difference
    shows, is left as it is)."""
    per_question = report["per_question"]
    key = lambda d: (d["task"], d["q_id"])  # noqa: E731
    base = {key(d): d["base"] for d in per_question}
    parts = {part: {key(d): d[part] for d in per_question if d.get(part) is not None} for part in ("held_out", "in_sample")}

    def fill(stored: dict, fresh: dict) -> None:
        for m, r in stored.items():
            r.setdefault("base_ci", fresh[m]["base_ci"])
            r.setdefault("adapter_ci", fresh[m]["adapter_ci"])

    for part, scores in parts.items():
        fill(report[part], compare(base, scores, [k for k in base if k in scores]))
        for row in report.get("per_task") or []:
            fill(row[part], compare(base, scores, [k for k in base if k in scores and k[0] == row["task"]]))
    for f in report.get("per_fold") or []:
        fill(f["held_out"], compare(base, parts["held_out"], [k for k in base if k[1] in set(f["questions"])]))
    prior = report.get("letter_prior")
    if prior and "prior_ci" not in prior:
        fresh = prior_comparison(per_question, prior["per_document"])
        prior.update(prior_ci=fresh["prior_ci"], adapter_ci=fresh["adapter_ci"])
        fresh_tasks = _prior_per_task(per_question, prior["per_document"])
        for t, row in prior.get("per_task", {}).items():
            row.setdefault("prior_ci", fresh_tasks[t]["prior_ci"])
            row.setdefault("adapter_ci", fresh_tasks[t]["adapter_ci"])
    return report


def _paired(questions: list[str], a: list[float], b: list[float]) -> dict:
    """``stats.paired_bootstrap`` of the mean over documents, b - a, resampling and exchanging whole
    questions: the countries of a question share its prompt, so its documents are not independent
    (one country: one document per question). No interval or p-value (None) for one question, which
    resamples to itself: a point "interval" and p = 0 would mislead."""
    ca, cb = stats.cluster_sums(questions, a), stats.cluster_sums(questions, b)
    paired = stats.paired_bootstrap(stats.cluster_mean, ca, cb)
    if len(ca) < 2:
        paired.update(low=None, high=None, p_value=None)
    return paired


def pool(base: dict, results: list[dict]) -> dict:
    """Per-question held-out and in-sample adapter scores beside the base model's, with paired
    bootstrap intervals over the questions (each with its documents, one per country), pooled and
    per fold.

    In-sample, a question's adapter score is the mean over the adapters whose training rows hold it
    (k-1 of them when every fold's rows cover their questions; counted per question)."""
    base_scores = _by_doc(base["scores"])
    held, runs_inside = {}, {}
    for r in results:
        held.update(_by_doc(r["held_out_scores"]["scores"]))
        for key, v in _by_doc(r["in_sample_scores"]["scores"]).items():
            runs_inside.setdefault(key, []).append(v)
    inside = {k: {m: stats.mean([v[m] for v in vs]) for m in METRICS} for k, vs in runs_inside.items()}
    docs = sorted(base_scores, key=lambda k: (k[0], int(k[1])))
    missing = [f"{t} Q{q}" for t, q in docs if (t, q) not in held]
    if missing:
        raise TrainingError(f"no held-out score for {', '.join(missing)}: the folds do not cover every question")
    fold_of = {q: r["fold"] for r in results for q in r["held_out"]}
    per_fold = []
    for r in results:
        held_keys = [k for k in docs if k[1] in set(r["held_out"])]
        in_scores = _by_doc(r["in_sample_scores"]["scores"])
        per_fold.append({"fold": r["fold"], "questions": r["held_out"], "training": r["training"],
                         "held_out": compare(base_scores, held, held_keys),
                         "in_sample": compare(base_scores, in_scores, [k for k in docs if k in in_scores]),
                         "held_out_command": r["held_out_scores"]["command"]})
    per_question = [{"task": t, "q_id": q, "fold": fold_of[q], "base": base_scores[(t, q)],
                     "held_out": held[(t, q)], "in_sample": inside.get((t, q)),
                     "in_sample_adapters": len(runs_inside.get((t, q), []))} for t, q in docs]
    # several countries (Arabic, Spanish, CultureLLM-One): each country's documents on their own too
    per_task = [{"task": t, "held_out": compare(base_scores, held, [k for k in docs if k[0] == t]),
                 "in_sample": compare(base_scores, inside, [k for k in docs if k[0] == t and k in inside])}
                for t in base["scores"]] if len(base["scores"]) > 1 else []
    return {"held_out": compare(base_scores, held, docs),
            "in_sample": compare(base_scores, inside, [k for k in docs if k in inside]),
            "per_fold": per_fold, "per_task": per_task, "per_question": per_question}


def _answer_letter(row: dict) -> str:
    return str(row["messages"][-1]["content"]).strip()


def letter_prior(rows: list[dict], folds: list[list[str]], tasks, per_question: list[dict],
                 by_country: bool = False, distributions: dict | None = None) -> dict | None:
    """The held-out gain a constant answer would get: each fold's held-out questions answered with the
    letter its training rows use most (a tie goes to the first letter), scored as WVS majority agreement
    scores an answer: right when the letter's code is one of the country's most chosen
    (``distributions``: per country slug and q_id, the answer distribution in code order; where two
    codes tie, as Brazil's Q231, both count, while the rows carry the lower one), else (no
    ``distributions``) against the held-out rows' labels, which under the ``majority`` rule are the
    country's majority answers; then the adapters' held-out agreement minus this prior, paired over
    the questions (``prior_comparison``). An adapter that only learnt "this country mostly answers A"
    gains nothing over it.
    ``by_country``: one letter per fold and country, for a model whose prompts name the country (the
    persona line: CultureLLM-One by default, any culture built with ``--tag-country``), which can learn
    each country's favourite letter; without it the countries' prompts are the same, one letter per fold.
    ``per_document``: the prior's score of each document, in ``per_question``'s order. None when the
    rows were labelled with another rule (their labels are not the majority)."""
    from collections import Counter

    if any(r.get("rule", "majority") != "majority" for r in rows):
        return None
    task_of = {c.slug: t for t, c in tasks}
    majority: dict[tuple, set[str]] = {}  # (task, q_id): the letters WVS majority agreement counts as agreeing
    if distributions is not None:
        for slug, by_q in distributions.items():
            for q, p in by_q.items():
                p = np.asarray(p, dtype=float)
                majority[(task_of.get(slug), str(q))] = {LETTERS[i] for i in np.flatnonzero(p == p.max())}
    else:
        for r in sorted(rows, key=lambda r: r.get("step") != "seed"):  # the seed wording's label first
            majority.setdefault((task_of.get(str(r.get("country"))), str(r["q_id"])), {_answer_letter(r)})
    groups = [[c] for c in task_of] if by_country else [list(task_of)]
    per_fold, prior = [], {}
    for index, held_out in enumerate(folds, start=1):
        train = fold_rows(rows, held_out)
        for group in groups:
            counts = Counter(_answer_letter(r) for r in train if str(r.get("country")) in group)
            if not counts:
                continue
            letter = min(counts, key=lambda k: (-counts[k], k))
            per_fold.append({"fold": index, **({"country": group[0]} if by_country else {}), "letter": letter,
                             "share": counts[letter] / sum(counts.values())})
            for q in held_out:
                for t in (task_of[c] for c in group):
                    if (t, q) in majority:
                        prior[(t, q)] = float(letter in majority[(t, q)])
    if any((d["task"], d["q_id"]) not in prior for d in per_question):
        return None
    a = [prior[(d["task"], d["q_id"])] for d in per_question]
    return {"by": "fold and country" if by_country else "fold", "per_fold": per_fold,
            **prior_comparison(per_question, a), "per_task": _prior_per_task(per_question, a), "per_document": a}


def _prior_per_task(per_question: list[dict], prior: list[float]) -> dict:
    """``prior_comparison`` for each task's documents on their own."""
    out = {}
    for t in dict.fromkeys(d["task"] for d in per_question):
        mine = [(d, x) for d, x in zip(per_question, prior) if d["task"] == t]
        out[t] = prior_comparison([d for d, _ in mine], [x for _, x in mine])
    return out


def prior_comparison(per_question: list[dict], prior: list[float]) -> dict:
    """The adapters' held-out majority agreement minus the letter prior's (``prior``: per document, in
    ``per_question``'s order), paired over the questions as ``compare`` pairs them."""
    b = [d["held_out"]["wvs_majority"] for d in per_question]
    questions = [d["q_id"] for d in per_question]
    return {"prior": stats.mean(prior), "prior_ci": level_ci(questions, prior, True), "adapter": stats.mean(b),
            "adapter_ci": level_ci(questions, b, True), **_paired(questions, prior, b), "documents": len(prior)}


def _pct(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


# why a mean or difference has no interval (``level_ci``, ``_paired``): a table cell says so beside the number
ONE_QUESTION = " (no interval: one question)"


def _level(value: float | None, ci, unit: str = "") -> str:
    """A mean in points with its 95 % interval, or with why it has none: one question resamples to itself."""
    low, high = ci or (None, None)
    if low is not None and high is not None:
        return _pct(value) + unit + f" [{_pct(low)}, {_pct(high)}]"
    return _pct(value) + unit + (ONE_QUESTION if _pct(value) != "–" else "")


def _diff(r: dict) -> str:
    """A difference in points with its paired interval, or with why it has none (``_level``)."""
    return _level(r["diff"], None if r["low"] is None else (r["low"], r["high"]))


def _p(x: float | None, iters: int = stats.ITERS) -> str:
    return "–" if x is None or not np.isfinite(x) else (f"< {2 / iters:.3f}" if x == 0 else f"{x:.3f}")


def batch_text(settings: dict) -> str:
    """The batch as trained: with gradient accumulation or several processes, the per-process batch and the
    global one it adds up to (a run at batch 8 × 2 accumulated is not a run at batch 8)."""
    batch, accum, world = settings["batch_size"], settings.get("grad_accum") or 1, settings.get("world_size") or 1
    parts = [f"batch {batch}"]
    if accum > 1:
        parts.append(f"{accum} accumulated")
    if world > 1:
        parts.append(f"{world} processes")
    if len(parts) == 1:
        return parts[0]
    return " × ".join(parts) + f" ({global_batch(batch, accum, world)} per step)"


def scoring_text(settings: dict, chat: bool | None) -> str:
    """How lm_eval scored the run: its dtype, the batch size and device where the run stores them (half
    precision, where they move the scores), and whether through the chat template."""
    text = f"scored in {settings.get('eval_dtype') or 'float32'}"
    if "eval_batch_size" in settings:
        text += f" at batch {settings['eval_batch_size']} on {settings.get('eval_device')}"
    if chat is not None:
        text += ", through the model's chat template" if chat else ", without a chat template"
    return text


def data_text(report: dict) -> str:
    """The training rows by file name, example count and digest: a run on fewer rows (seed wordings only, a reduced
    budget) reads as such beside one on their paraphrases. Every row trains the k−1 folds that do not hold out
    its question, so the folds' training examples add up to k−1 times the rows."""
    rows = sum(f["training"]["examples"] for f in report["per_fold"]) // max(report["folds"] - 1, 1)
    names = ", ".join(f"`{Path(p).name}`" for p in report["data"])
    digests = ", ".join(d.removeprefix("sha256:")[:12] + "…" for d in report["settings"].get("data_sha256") or [])
    return f"trained on {names} ({rows} examples" + (f", sha256 {digests})" if digests else ")")


def training_text(s: dict) -> str:
    """The base model and the LoRA settings, worded alike in a culture's report and in the summary."""
    length = f"{s['max_steps']} steps" if s["max_steps"] > 0 else f"{s['epochs']} epochs"
    return (f"Base model `{s['model']}`, LoRA r {s['rank']}, lr {s['learning_rate']}, {length}, "
            f"{batch_text(s)}, seed {s['seed']}")


def markdown(report: dict) -> str:
    """The pooled table (held-out beside in-sample) and one row per fold, in percent."""
    s = report["settings"]
    lines = [f"# {report['folds']}-fold held-out evaluation: {report['culture']}", "",
             training_text(s) + f"; {data_text(report)}; folds seeded with {s['fold_seed']}; "
             + scoring_text(s, report.get("chat_template")) + "; tasks "
             + ", ".join(f"`{t}`" for t in report["tasks"]) + f"; {report['documents']} documents (country × question).",
             "Difference = adapter − base in points (means over the documents), 95 % paired bootstrap interval "
             "over the questions (a question's documents, one per country, resampled together; "
             f"{stats.ITERS} resamples, seed {stats.SEED}), two-sided randomisation p (whole questions exchanged). "
             "In-sample: each question scored by the "
             "k−1 adapters trained on it (mean).", "",
             *provenance.describe(report.get("environment")),
             "| questions | metric | base [95 % CI] | adapter [95 % CI] | difference [95 % CI] | p | documents |",
             "|---|---|---|---|---|---|---|"]
    for part, label in (("held_out", "held-out"), ("in_sample", "in-sample")):
        for m in METRICS:
            r = report[part][m]
            lines.append(f"| {label} | {LABELS[m]} | {_level(r['base'], r.get('base_ci'))} | "
                         f"{_level(r['adapter'], r.get('adapter_ci'))} | "
                         f"{_diff(r)} | {_p(r['p_value'])} | "
                         f"{r['documents']} |")
    prior = report.get("letter_prior")
    if prior:
        letters = ", ".join(f"{f['letter']} ({100 * f['share']:.0f} %)" for f in prior["per_fold"]) \
            + " of the training rows"
        whose = "its fold's"
        if prior.get("by") == "fold and country":
            whose, letters = "its country's (in its fold)", f"{len(prior['per_fold'])} letters, listed in kfold.json"
        lines += ["", f"Letter prior: each held-out question answered with {whose} most frequent training answer "
                      f"({letters}) agrees with the majority on {_level(prior['prior'], prior.get('prior_ci'), ' %')} "
                      f"of the held-out documents; the adapters' held-out "
                      f"{_level(prior['adapter'], prior.get('adapter_ci'), ' %')} minus that: "
                      f"{_diff(prior)} points "
                      f"(p {_p(prior['p_value'])})."]
    lines += _country_lines(report)
    lines += ["", "WVS majority agreement per fold (the in-sample documents: the fold's adapter on the questions "
                  "it was trained on):", "",
              "| fold | held-out questions | documents | training examples | steps | train loss | "
              "majority: base [95 % CI] | held-out [95 % CI] | held-out difference [95 % CI] | p | "
              "in-sample difference [95 % CI] | p |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in report["per_fold"]:
        h, i, t = f["held_out"]["wvs_majority"], f["in_sample"].get("wvs_majority"), f["training"]
        inside = f"{_diff(i)} | {_p(i['p_value'])}" if i else "– | –"
        lines.append(f"| {f['fold']} | {', '.join('Q' + q for q in f['questions'])} | {h['documents']} | "
                     f"{t['examples']} | {t['steps']} | {t['train_loss']:.3f} | {_level(h['base'], h.get('base_ci'))} | "
                     f"{_level(h['adapter'], h.get('adapter_ci'))} | "
                     f"{_diff(h)} | {_p(h['p_value'])} | {inside} |")
    return "\n".join(lines) + "\n"


def _country_lines(report: dict) -> list[str]:
    """WVS majority agreement per country of a run with several (``pool`` leaves ``per_task`` empty for one)."""
    if not report.get("per_task"):
        return []
    prior = (report.get("letter_prior") or {}).get("per_task", {})
    lines = ["", "Per country, WVS majority agreement (held-out − letter prior: paired over the country's documents):",
             "", "| task | documents | base [95 % CI] | held-out [95 % CI] | in-sample [95 % CI] | "
             "held-out difference [95 % CI] | p | letter prior [95 % CI] | "
             "held-out − letter prior [95 % CI] | p |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["per_task"]:
        h, i = row["held_out"]["wvs_majority"], row["in_sample"].get("wvs_majority", {})
        lines.append(f"| `{row['task']}` | {h['documents']} | {_level(h['base'], h.get('base_ci'))} | "
                     f"{_level(h['adapter'], h.get('adapter_ci'))} | {_level(i.get('adapter'), i.get('adapter_ci'))} | "
                     f"{_diff(h)} | {_p(h['p_value'])} | "
                     f"{_prior_cells(prior.get(row['task']))} |")
    return lines


# --------------------------------------------------------------------------- across cultures

# settings that differ between the cultures' runs of one comparison: their training data and their countries'
# survey files (the files both runs name, the question bank, are compared)
PER_CULTURE = ("data_sha256", "survey_sha256")


@dataclass
class KFoldSummaryConfig:
    """Several cultures' ``kfold.json`` side by side, and all of them together."""

    runs: list[str] = field(metadata={
        "help": "kfold.json files (or their folders) of `culture-train kfold` runs, one per culture, made with the "
                "same settings"})
    output: str = field(metadata={"help": "Markdown file of the table (the summary, with intervals, is printed as JSON)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --output file"})

    def __post_init__(self):
        check_bool_fields(self)
        if not self.runs:
            raise ValueError("--runs: name at least one kfold.json")


def read_report(path: str | Path) -> tuple[Path, dict]:
    """A run's ``kfold.json`` (a folder means the file in it), refused when it is not one."""
    path = Path(path)
    path = path / "kfold.json" if path.is_dir() else path
    if not path.is_file():
        raise TrainingError(f"{path}: no such file; name a kfold.json written by `culture-train kfold`")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise TrainingError(f"{path}: not a kfold.json ({err}); name the files `culture-train kfold` wrote") from None
    missing = [k for k in ("culture", "settings", "held_out", "in_sample", "per_question")
               if not isinstance(report, dict) or k not in report]
    if missing:
        raise TrainingError(f"{path}: not a finished `culture-train kfold` report (no {', '.join(missing)})")
    prior = report.get("letter_prior") or {}
    if prior and len(prior.get("per_document") or []) != len(report["per_question"]):
        raise TrainingError(f"{path}: letter_prior.per_document has {len(prior.get('per_document') or [])} entries for "
                            f"{len(report['per_question'])} documents; the file was edited or cut: run the k-fold again")
    return path, backfill_level_intervals(report)


def _check_comparable(reports: dict[Path, dict]) -> None:
    """One culture per run (a CultureLLM-One run, which covers them all, only alone), and every setting but
    the data shared: otherwise a row of the table would differ from the next in more than its culture."""
    seen: dict[str, Path] = {}
    for path, r in reports.items():
        culture = culture_key(r["culture"])  # "English" in a report written before runs recorded it as english
        if culture == ONE and len(reports) > 1:  # its countries are the other runs' countries
            raise TrainingError(f"{path}: a CultureLLM-One run (culture {ONE}) covers every culture; summarise it "
                                "alone, or leave it out")
        if culture in seen:
            raise TrainingError(f"{path}: culture {culture} is also the culture of {seen[culture]}; "
                                "give one run per culture")
        seen[culture] = path
    defining = lambda r: {**{k: v for k, v in r["settings"].items() if k not in PER_CULTURE  # noqa: E731
                             and not _recorded_by_content(r["settings"], k)},
                          "folds": r["folds"], "chat_template": r.get("chat_template"),
                          # rows built with --tag-country are scored on the _persona tasks: another evaluation
                          "persona line (--tag-country)": any(t.endswith("_persona") for t in r["tasks"])}
    (first, ref), *rest = reports.items()
    for path, r in rest:
        a, b = defining(ref), defining(r)
        diff = [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k) and not same_folder_content(a, b, k)]  # `m` and `/abs/m`: one model
        diff += _shared_survey_differences(ref, r)
        if diff:
            raise TrainingError(f"{path}: made with other settings than {first} ({'; '.join(diff)}); compare runs "
                                "made with the same model, training and folds")


def _recorded_by_content(settings: dict, key: str) -> bool:
    """Whether ``key`` is the data root of a run that recorded the digests of the survey files it read: the
    files (``survey_sha256``, compared by ``_shared_survey_differences`` across cultures and as a setting on
    --resume) are what counts, not how the root was named (an environment variable in one run, ``--data-dir``
    with the same folder in another, a relative path, a trailing slash, a link)."""
    return key == "data_dir" and bool(settings.get("survey_sha256"))


def _shared_survey_differences(a: dict, b: dict) -> list[str]:
    """The survey files two runs were both scored on (the question bank) whose content differs."""
    sa, sb = a["settings"].get("survey_sha256") or {}, b["settings"].get("survey_sha256") or {}
    return [f"survey file {name}: {sa[name]!r} vs {sb[name]!r}" for name in sorted(set(sa) & set(sb))
            if sa[name] != sb[name]]


def _question_clusters(docs: list[tuple[str, dict]], *values) -> list[tuple]:
    """``(culture, (sum, ..., count))`` per question of a culture, from ``(culture, per_question row)``
    documents and one function of the row per sum: a question's documents (its countries) are
    resampled and exchanged together."""
    keys = [(c, q["q_id"]) for c, q in docs]
    sums = [stats.cluster_sums(keys, [value(q) for _, q in docs]) for value in values]
    cultures = dict.fromkeys(keys)
    return [(c, (*(s[k][0] for s in sums), sums[0][k][1])) for k, (c, _) in enumerate(cultures)]


def _culture_mean_difference(a: list[tuple], b: list[tuple], first: str = "base", share: bool = False) -> dict:
    """``(culture, (sum, count))`` question clusters (``_question_clusters``) of two scorings of the same
    documents: the mean over cultures of each culture's mean over documents for both, and the paired
    bootstrap of b − a with questions resampled within their culture (``stats.TaskMean``), so every
    resample keeps each culture's size and a culture with two countries counts once, like a culture
    with one. ``share``: 0 / 1 scores, whose means alike at one end get their exact interval (``level_ci``)."""
    aggregate = stats.TaskMean(stats.cluster_share_mean if share else stats.cluster_mean, stats.cluster_mean_weighted)
    return {first: aggregate(a), f"{first}_ci": _ci(aggregate, a), "adapter": aggregate(b),
            "adapter_ci": _ci(aggregate, b), **stats.paired_bootstrap(aggregate, a, b),
            "documents": sum(n for _, (_, n) in a)}


def _all_cultures(reports: list[dict], part: str) -> dict:
    """All cultures together, adapter (``part``: held-out or in-sample) vs base, per metric."""
    out = {}
    docs = [(r["culture"], q) for r in reports for q in r["per_question"] if q.get(part) is not None]
    for m in METRICS:
        out[m] = _culture_mean_difference(_question_clusters(docs, lambda q: q["base"][m]),
                                          _question_clusters(docs, lambda q: q[part][m]), share=m == "wvs_majority")
    return out


class HeldOutShare:
    """The held-out gain as a share of the in-sample gain, each the mean over cultures of the
    culture's mean gain over the base, from question clusters ``(culture, (base sum, held-out sum,
    in-sample sum, documents))``; NaN where the in-sample gain is not positive. Resampled within
    culture, as the gains are."""

    strata = staticmethod(stats.TaskMean.strata)

    def __call__(self, items) -> float:
        gain = stats.TaskMean(stats.cluster_mean)  # two means of one resample: the vectorised form buys nothing
        held = gain([(c, (h - b, n)) for c, (b, h, _, n) in items])
        inside = gain([(c, (i - b, n)) for c, (b, _, i, n) in items])
        return held / inside if inside > 0 else float("nan")


def held_out_share(reports: list[dict], metric: str = "wvs_majority") -> dict:
    """``HeldOutShare`` of the documents scored both ways, with its bootstrap interval over questions."""
    docs = [(r["culture"], q) for r in reports for q in r["per_question"]
            if q.get("held_out") is not None and q.get("in_sample") is not None]
    items = _question_clusters(docs, lambda q: q["base"][metric], lambda q: q["held_out"][metric],
                               lambda q: q["in_sample"][metric])
    share = HeldOutShare()
    value, nan = share(items), float("nan")
    if not np.isfinite(value) or not stats.enough_items(share, items):  # one question in each culture
        return {"share": value, "ci": [nan, nan], "undefined": None,
                **({"why": "one question in each culture"} if np.isfinite(value) else {})}
    resamples = stats.bootstrap_statistics(share, items)
    undefined = float(np.isnan(resamples).mean())
    # a resample whose in-sample gain is not positive has no share: the percentile interval of the others is
    # conditional on it, and no 95 % interval once more than its 2.5 % tail is missing
    ci = stats.percentile_interval(resamples) if undefined <= (1 - stats.LEVEL) / 2 else (nan, nan)
    return {"share": value, "ci": list(ci), "undefined": undefined}


def across_cultures(reports: dict[Path, dict]) -> dict:
    """Per culture its run's pooled held-out and in-sample differences; then all cultures together."""
    _check_comparable(reports)
    ordered = sorted(reports.values(), key=lambda r: r["culture"])
    rows = [{"culture": r["culture"], "tasks": r["tasks"], "documents": r["documents"],
             "held_out": r["held_out"], "in_sample": r["in_sample"], "held_out_share": held_out_share([r]),
             "letter_prior": {k: v for k, v in r["letter_prior"].items() if k != "per_document"}
             if r.get("letter_prior") else None} for r in ordered]
    together = {"culture": "all", "tasks": [t for r in ordered for t in r["tasks"]],
                "documents": sum(r["documents"] for r in ordered),
                "held_out": _all_cultures(ordered, "held_out"), "in_sample": _all_cultures(ordered, "in_sample"),
                "held_out_share": held_out_share(ordered), "letter_prior": _prior_all(ordered)}
    return {"settings": ordered[0]["settings"], "folds": ordered[0]["folds"], "runs": [str(p) for p in reports],
            "chat_template": ordered[0].get("chat_template"), "cultures": rows, "all": together}


def _prior_all(reports: list[dict]) -> dict | None:
    """Adapters' held-out majority minus the letter prior, all cultures together (as ``_all_cultures``)."""
    if any(not r.get("letter_prior") for r in reports):
        return None
    docs = [(r["culture"], {**q, "prior": v}) for r in reports
            for q, v in zip(r["per_question"], r["letter_prior"]["per_document"], strict=True)]
    return _culture_mean_difference(_question_clusters(docs, lambda q: q["prior"]),
                                    _question_clusters(docs, lambda q: q["held_out"]["wvs_majority"]), first="prior",
                                    share=True)


def _prior_cells(prior: dict | None) -> str:
    return "– | – | –" if not prior else (f"{_level(prior['prior'], prior.get('prior_ci'))} | {_diff(prior)} | "
                                         f"{_p(prior['p_value'])}")


def _share(share: dict) -> str:
    value, (low, high) = share["share"], share["ci"]
    if not np.isfinite(value):
        return "–"
    if np.isfinite(low) and np.isfinite(high):
        return f"{value:.2f} [{low:.2f}, {high:.2f}]"
    undefined = share.get("undefined")
    if undefined:  # a summary of an earlier version records none
        return f"{value:.2f} (no interval: the in-sample gain is not positive in {100 * undefined:.1f} % of resamples)"
    return f"{value:.2f} (no interval" + (f": {share['why']})" if share.get("why") else ")")


def summary_markdown(summary: dict) -> str:
    """One row per culture and one for all of them: WVS majority held-out beside in-sample (and the
    held-out share of the in-sample gain), the letter prior and the held-out agreement above it, then
    1−W1 and 1−JSD held out; points, 95 % intervals."""
    s = summary["settings"]
    lines = [f"# {summary['folds']}-fold held-out evaluation across cultures", "",
             training_text(s) + f"; folds seeded with {s['fold_seed']}; "
             + scoring_text(s, summary.get("chat_template")) + ". Difference = adapter"
             " − base in points (means over the documents, country × question) with its 95 % paired bootstrap "
             "interval over the questions (a question's documents, one per country, resampled together; "
             f"{stats.ITERS} resamples, seed {stats.SEED}) and two-sided randomisation p (whole questions "
             "exchanged). *all*: the mean over cultures of each culture's mean (each culture counts once), "
             "questions resampled within their culture.", "",
             "| culture | documents | majority: base [95 % CI] | held-out difference | p | in-sample difference | p | "
             "held-out / in-sample | letter prior [95 % CI] | held-out − letter prior | p | 1−W1 held-out difference | "
             "1−JSD held-out difference |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in [*summary["cultures"], summary["all"]]:
        h, i = row["held_out"], row["in_sample"]
        hm, im = h["wvs_majority"], i["wvs_majority"]
        share = _share(row["held_out_share"])
        name = f"**{row['culture']}**" if row is summary["all"] else row["culture"]
        lines.append(f"| {name} | {row['documents']} | {_level(hm['base'], hm.get('base_ci'))} | {_diff(hm)} | "
                     f"{_p(hm['p_value'])} | "
                     f"{_diff(im)} | {_p(im['p_value'])} | {share} | {_prior_cells(row['letter_prior'])} | "
                     f"{_diff(h['wvs_w1'])} | {_diff(h['wvs_jsd'])} |")
    return "\n".join(lines) + "\n"


def run_summary(cfg: KFoldSummaryConfig) -> dict:
    """Read the runs, check they compare, write the table; the summary is returned."""
    reports = dict(read_report(p) for p in cfg.runs)
    claim = dict(overwrite=cfg.overwrite, inputs=[*reports, getattr(cfg, "config_file", None)], folder=False,
                 resumable=False, error=TrainingError)
    claim_output(cfg.output, **claim)  # before the bootstrap: a refused output costs nothing
    with OutputLock.for_file(Path(cfg.output), TrainingError):
        claim_output(cfg.output, **claim)  # another run may have written it meanwhile
        summary = across_cultures(reports)
        write_text_atomic(Path(cfg.output), summary_markdown(summary))
    return summary


# --------------------------------------------------------------------------- the run


def _prepare(out: Path, cfg: KFoldConfig, settings: dict) -> str:
    """Claim the output (new, resume or replace) and compare stored settings on --resume; reads only."""
    mode = claim_output(out, overwrite=cfg.overwrite, resume=cfg.resume,
                        inputs=[cfg.model, *cfg.data, getattr(cfg, "config_file", None),
                                resolve_data_root(cfg.data_dir)], error=TrainingError, models=[cfg.model])
    if mode == "resume":
        stored = load_settings(out / SETTINGS, TrainingError)
        if stored is None:
            raise TrainingError(f"--resume: {out} holds no {SETTINGS}, so it is not a cross-validation run; pass "
                                "--overwrite to start one there, or choose another --output")
        # the data root by the survey files' content where both runs recorded it: `../data`, `/abs/data/` or a
        # link to it, or $CULTURE_DATA_DIR, name one data set; other answers differ in survey_sha256
        keys = [k for k in sorted(set(stored) | set(settings))
                if not (_recorded_by_content(stored, k) and _recorded_by_content(settings, k))]
        check_settings(stored, settings, out, keys=keys, error=TrainingError,
                       later=(*LATER_SETTINGS, *NOT_DEFINING, "eval_kernels"))
    return mode


def check_finished_adapters(out: Path, folds: int) -> None:
    """A fold not yet scored whose adapter is finished (its training.json) is reused as it is: one whose weights or
    config were since removed or cut would fail in lm-eval's loader ("Repo id must be in the form ...", naming no
    file or fix) once the base model was scored. Refused at the start of the resume instead, naming the fold's
    adapter and the fix."""
    for index in range(1, folds + 1):
        adapter = fold_folder(out, index) / "adapter"
        if (fold_folder(out, index) / RESULT).is_file() or not (adapter / "training.json").is_file():
            continue
        problem = adapter_problem(adapter)
        if problem is not None:
            raise TrainingError(f"--resume: the finished adapter of fold {index} is not complete ({problem} in "
                                f"{adapter}); remove {adapter} and run again with --resume to train the fold again")


def _remove_killed_writes(out: Path, folds: int) -> None:
    """The temporary files a run killed while writing left in the output and its fold folders: a resumed run
    ends with the files of the uninterrupted one."""
    remove_killed_writes(out, WRITTEN)
    for index in range(1, folds + 1):
        remove_killed_writes(fold_folder(out, index), FOLD_WRITTEN)


def run_kfold(cfg: KFoldConfig) -> dict:
    """Every fold (finished ones skipped on --resume), the base model once, then kfold.json / kfold.md."""
    out = Path(cfg.output)
    rows = read_examples(cfg.data)
    culture = _culture(rows, cfg.data)
    check_q_ids(cfg.data)
    persona = _persona(rows, cfg.data)
    check_no_system_message(rows, cfg.data)
    tasks = survey_tasks(culture, persona)
    answered = answered_questions([c for _, c in tasks], cfg.data_dir)
    check_wordings(cfg.data, load_questions(cfg.data_dir))
    universe = set().union(*answered.values())
    stray = sorted({str(r["q_id"]) for r in rows} - universe, key=int)
    if stray:
        raise TrainingError(f"{', '.join(cfg.data)}: rows of Q{', Q'.join(stray)}, which no country of {culture} "
                            "answered in this data root; build the rows and run the folds with the same data root")
    folds = assign_folds(universe, cfg.folds, cfg.fold_seed)
    for index, held in enumerate(folds, start=1):
        if not fold_rows(rows, held):
            raise TrainingError(f"fold {index} (held out: Q{', Q'.join(held)}) has no training row: every row of "
                                f"{', '.join(cfg.data)} is of one of these questions; build rows for more of the "
                                "questions, or give fewer --folds")
    chat = _check_fold_examples(cfg, rows, folds)
    settings = defining_settings(cfg)
    settings["survey_sha256"] = survey_digests([c for _, c in tasks], cfg.data_dir)
    check_target_modules(cfg)
    warn_half_precision(cfg.eval_dtype, "--eval-dtype")  # once for every scoring of the run, as other commands warn
    with contextlib.ExitStack() as locks:
        locks.enter_context(OutputLock.for_folder(out, TrainingError))
        mode = _prepare(out, cfg, settings)
        folders = [fold_folder(out, index) for index in range(1, cfg.folds + 1)]
        for folder in folders:  # a run into a fold folder (lora --output out/fold-1) holds its lock, and keeps this out
            if folder.exists() and not folder.is_dir():
                raise TrainingError(f"{folder} is a file, not a fold folder; move it or choose another --output")
            locks.enter_context(OutputLock.for_folder(folder, TrainingError))
        if mode == "resume":
            _remove_killed_writes(out, cfg.folds)
            check_finished_adapters(out, cfg.folds)
        if mode == "replace":
            set_aside_around(out, folders)
        if mode != "resume":
            save_settings(out / SETTINGS, settings)
        names = [t for t, _ in tasks]
        if (out / "base.json").is_file():
            base = json.loads((out / "base.json").read_text(encoding="utf-8"))
        else:
            base = score(cfg, None, names, None, chat)
            write_text_atomic(out / "base.json", json.dumps(base, indent=1))
        results = []
        for index in tqdm(range(1, cfg.folds + 1), desc="folds", unit="fold"):
            done = fold_folder(out, index) / RESULT
            if done.is_file():
                log.info("fold %d is finished (%s): skipped", index, done)
                results.append(json.loads(done.read_text(encoding="utf-8")))
                continue
            results.append(run_fold(cfg, index, folds, rows, tasks, answered, chat))
        report = {"culture": culture, "data": cfg.data, "folds": cfg.folds, "fold_questions": folds, "tasks": names,
                  "chat_template": chat, "documents": sum(len(v) for v in base["scores"].values()),
                  "settings": settings, "base_command": base["command"], **pool(base, results)}
        report["letter_prior"] = letter_prior(rows, folds, tasks, report["per_question"], by_country=persona,
                                              distributions=answered)
        report["environment"] = provenance.environment(eval_device(cfg))
        write_text_atomic(out / "kfold.json", json.dumps(report, indent=1))
        write_text_atomic(out / "kfold.md", markdown(report))
    return report
