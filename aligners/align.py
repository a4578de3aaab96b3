"""Search a soft prompt that moves a frozen model's VSM13 answers to a country's Hofstede profile.

The loss of every candidate is its ``--objective`` of the metrics that ``lm_eval --tasks
vsm13_<country>`` reports for the same prompt (minus its ``vsm13_margin`` for ``contrastive``, its
``vsm13_l1`` for ``l1``): requests, tokens and aggregation all come from the lm-eval task itself
(``TaskScorer``). ``--option-order`` (``aligners.orders``) picks the task: the listed or both orders, or both
with a candidate scored by its worse order, the larger loss of ``vsm13_<country>`` and its ``_reversed`` task. State is saved atomically after each generation; ``--resume`` replays the
saved fitness history into a fresh optimiser, which reproduces its state exactly.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import math
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from aligners import distributed
from aligners.config import RUN_KEYS, AlignConfig, search_keys
from aligners.intervals import (PAIRED, change_vs_plain, interval, loss_interval, parts_loss_interval, scorer_item_means,
                                task_constants, with_intervals)
from aligners.objectives import LOSS_LABELS, make_objective
from aligners.optimizers import make_optimizer
from aligners.orders import SEARCH_ORDERS, SINGLE_ORDERS, SearchOrder, combined
from aligners.scoring import TaskScorer, config_vocab, load_hflm, loaded_dtype
from aligners.soft_prompt import SoftPromptSpace, check_prompt_tuning_fits, save_prompt_tuning_adapter
from culture_tasks import plots, provenance, stats
from culture_tasks.atomic import staged_files, write_text_atomic
from culture_tasks.data_root import ENV_VAR, data_file, resolve_data_root
from culture_tasks.fingerprints import model_fingerprint
from culture_tasks.outputs import (LOCK_NAME, OutputLock, check_settings, claim_output, file_digest, load_settings,
                                   main_process, read_json, remove_killed_writes, safe_join, save_settings,
                                   set_aside_around, settings_differences)
from culture_tasks.paths import absolute_if_local, lm_eval_command, task_manager
from culture_tasks.survey.compare import hofstede_reference
from culture_tasks.survey.countries import listed_countries
from culture_tasks.survey.instruments import BEFORE_OPTION_ORDER, instrument
from culture_tasks.survey.vsm13 import DIMENSIONS, HOFSTEDE_FILE, ITEMS_FILE, Target, resolve_target

log = logging.getLogger("aligners")
STATE_FILE = "state.json"
RUN_SETTINGS = "run_settings.json"  # what defines the run, written when it starts
# a run of several countries: their list, in the output folder that holds one folder per country
COUNTRIES_FILE = "run_countries.json"
LOSS_KEYS = ("vsm13_l1", *DIMENSIONS)  # the task metrics an objective may read
REPORT_KEYS = ("baselines",)  # settings of the report alone: a finished run's report is not rewritten with others


class AlignmentError(ValueError):
    """Bad input to an alignment run; nothing was written."""


@dataclass
class CountryTasks:
    """The lm-eval tasks that score one target country, the metadata they need, and the target as
    those tasks resolve it (the objective and the report rank it among the same countries)."""

    key: str
    vsm13: str
    persona: str | None
    reversed: str
    wvs: str | None
    # the orders the search was not run on, by name: the task asking the items so (``report.other_orders``)
    other_orders: dict[str, str]
    metadata: dict
    target: Target
    order: SearchOrder  # how the search reads a candidate's loss from ``vsm13``'s documents
    # the tasks whose lm_eval results give the loss: ``vsm13``, or one per part of ``order``
    loss_tasks: tuple[str, ...]

    @property
    def scores(self) -> dict:
        return self.target.scores

    def lm_eval_command(self, model: str, checkpoint: str, chat: bool) -> str:
        """float32, as the report is scored (``in_float32``): it reports the loss alignment.json records and,
        from ``vsm13`` (under ``--option-order worst`` not one of the loss tasks), its ``final`` metrics."""
        tasks = list(dict.fromkeys((*self.loss_tasks, self.vsm13)))
        return lm_eval_command(model, tasks, adapter=checkpoint, metadata=self.metadata, dtype="float32", chat=chat)


def country_tasks(country: str, target: list[float] | None, cfg: AlignConfig) -> CountryTasks:
    """Known countries use their generated tasks; any other is scored through vsm13_usa's task with
    its scores and code passed as metadata (``target``, ``target_country``: ranked as itself, not in
    the USA's place; the lm-eval command in alignment.json says so). The data root is named in full,
    so the recorded command does not depend on the shell's environment."""
    resolved = resolve_target(country, target, cfg.data_dir)
    listed = listed_countries()
    # resolve_target codes a countries.yaml name or slug as its Hofstede code (vsm13.target_code)
    entry = next((c for c in listed if c.get("hofstede") == resolved.code), None)
    metadata = {"data_dir": os.path.abspath(resolve_data_root(cfg.data_dir))}  # as named: a link stays a link
    if cfg.answer_mode != "expected":
        metadata["answer_mode"] = cfg.answer_mode
    if target is not None or entry is None:
        metadata["target"] = resolved.scores
    if entry is None:
        metadata["target_country"] = resolved.code
    slug = entry["slug"] if entry else "usa"
    vsm13, wvs = instrument("vsm13"), instrument("wvs")
    search_order = SEARCH_ORDERS[cfg.option_order]
    order = search_order.variant
    return CountryTasks(
        key=entry["slug"] if entry else resolved.code.lower(),
        vsm13=vsm13.task(slug, order),
        persona=vsm13.task(slug, f"_persona{order}") if entry else None,
        reversed=vsm13.task(slug, "_reversed"),
        other_orders={name: vsm13.task(slug, suffix) for name, suffix in SINGLE_ORDERS.items() if suffix != order},
        wvs=wvs.task(slug) if entry and wvs.covers(entry) else None,
        metadata=metadata,
        # as load_vsm13 resolves it: the task's country, or target_country, with the metadata's scores
        target=resolve_target(metadata.get("target_country") or entry["hofstede"], metadata.get("target"),
                              cfg.data_dir),
        order=search_order,
        loss_tasks=tuple(vsm13.task(slug, SINGLE_ORDERS[part]) for part in search_order.parts)
        or (vsm13.task(slug, order),),
    )


def _write_json(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=1))


WRITTEN = (RUN_SETTINGS, STATE_FILE, "alignment.json", "loss_curve.png")  # written through atomic.replacing


def remove_temporaries(folder: Path) -> None:
    """Remove what a run killed mid-write left in ``folder``: the temporary files of ``atomic.replacing``
    for the files this command writes (``.state.json.XXXXXXXX.json``, ...) and ``_save_checkpoint``'s staging
    folders (``.adapter.XXXXXXXX``, a whole adapter each), naming each (``remove_killed_writes``).
    Anything else is left. Called with the folder's lock held, so no live run is using them."""
    remove_killed_writes(folder, WRITTEN, staged=True)


def load_lm(cfg: AlignConfig, dtype: str | None = None):
    """The base model in ``cfg.dtype`` (the search's), or in ``dtype``."""
    return load_hflm(cfg.model, device=cfg.device, dtype=dtype or cfg.dtype, batch_size=cfg.batch_size)


def _defining_settings(settings: dict) -> dict:
    """The search settings plus what they resolve to: the target scores, the VSM13 items and the
    Hofstede file by content (another data root may hold other scores or items under the same
    country; the contrastive and standardised objectives read every reference country's scores)."""
    out = {k: settings.get(k) for k in search_keys(settings)}
    out["target_scores"] = resolve_target(settings["country"], settings.get("target"), settings.get("data_dir")).scores
    out["vsm13_items"] = file_digest(data_file(ITEMS_FILE, settings.get("data_dir")))
    out["hofstede_reference"] = file_digest(data_file(HOFSTEDE_FILE, settings.get("data_dir")))
    out["model_fingerprint"] = model_fingerprint(settings["model"])  # another model under the same path
    if settings.get("dtype") != "float32":  # half-precision losses move with the kernels (RUN_KEYS: the device)
        out["kernels"] = provenance.kernels(settings.get("device"))
    return out


def _inputs(settings: dict, tasks: CountryTasks) -> dict:
    """What a run's numbers were computed from, by content: the model folder, the data root, its VSM13
    items and Hofstede file (the same digests a resume compares)."""
    given = _defining_settings(settings)
    return {"model_fingerprint": given["model_fingerprint"], "data_dir": tasks.metadata["data_dir"],
            "vsm13_items": given["vsm13_items"], "hofstede_reference": given["hofstede_reference"]}


def _check_stored_settings(stored: dict, given: dict, data_dir: str | None, out: Path) -> None:
    """``check_settings``; a run from before the Hofstede file was a setting is refused with the way to
    add it (no guess: the run may have used another file). A run stored before --option-order asked the options
    in the listed order, the only one there was."""
    stored = {**BEFORE_OPTION_ORDER, **stored}
    check_settings(stored, given, out, keys=[k for k in given if k in stored or k != "hofstede_reference"],
                   error=AlignmentError, later=("model_fingerprint", "kernels", *RUN_KEYS))
    if "hofstede_reference" not in stored:
        raise AlignmentError(
            f"--resume: {out / RUN_SETTINGS} predates the stored Hofstede file digest, so the reference countries "
            f"of its objective cannot be checked; if it used {data_file(HOFSTEDE_FILE, data_dir)}, add "
            f"\"hofstede_reference\": \"{given['hofstede_reference']}\" to that file, or choose another --output")


def with_run_keys_of(state: dict | None, stored: dict) -> dict:
    """A run whose run_settings.json predates RUN_KEYS: their values from state.json, which records the settings
    its last generation was searched with, so a resume under another batch size or device is refused there too."""
    searched = (state or {}).get("settings") or {}
    return {**{k: searched[k] for k in RUN_KEYS if k in searched}, **stored}


def _check_output(out: Path, resume: bool, settings: dict, hidden: int | None) -> dict | None:
    """The saved state to resume from, or None for a fresh start (whose settings are then stored);
    ``hidden=None`` checks before the model is loaded and stores nothing."""
    given = _defining_settings(settings)
    if not main_process():  # the main process checks, stores and reads; the others get its state (from_main)
        return None
    if claim_output(out, resume=resume, error=AlignmentError) == "new":
        if hidden is not None:
            save_settings(out / RUN_SETTINGS, {**given, "hidden_size": hidden})
        return None
    state_path = out / STATE_FILE
    stored = load_settings(out / RUN_SETTINGS, AlignmentError)
    state = _load_state(state_path) if state_path.exists() else None
    if stored is None and state is None:
        raise AlignmentError(f"--resume: {out} holds no {STATE_FILE} (not an alignment run, or one killed before it "
                             f"stored its settings); pass --overwrite to start a run there, or choose another --output")
    if stored is None:  # a run from before the settings were stored on their own: nothing recorded by content
        raise AlignmentError(
            f"--resume: {out} holds {STATE_FILE} but no {RUN_SETTINGS}, so the model, data and Hofstede file of its "
            "search cannot be checked; run it again with --overwrite or into another --output")
    _check_stored_settings(with_run_keys_of(state, stored), given, settings.get("data_dir"), out)
    saved_hidden = stored.get("hidden_size")
    _check_generations(state, settings["generations"], out)
    if hidden is not None and saved_hidden != hidden:
        raise AlignmentError(
            f"--resume: the run in {out} was made for hidden size {saved_hidden}, "
            f"but {settings['model']} has hidden size {hidden}; use the same base model or a new --output"
        )
    return state


def _load_state(path: Path) -> dict:
    """The search as ``path`` (state.json) holds it. Every write of it is atomic, so a file that is no JSON object
    with the generations' losses was damaged outside the run: a one-line error naming it (json's own names no
    file; a file without ``fitness`` stopped the resume with a KeyError)."""
    fix = "restore it, or start again with --overwrite"
    state = read_json(path, "--resume", fix, AlignmentError)
    fitness = state.get("fitness")
    if not (isinstance(fitness, list) and all(isinstance(row, list) for row in fitness)
            and isinstance(state.get("history"), list) and len(state["history"]) == len(fitness)
            and {"best_z", "best_loss"} <= state.keys()):
        raise AlignmentError(f"--resume: {path} holds no search (the losses of each generation, \"fitness\", their "
                             f"\"history\" and the best candidate); {fix}")
    return state


def _check_generations(state: dict | None, generations: int, out: Path) -> None:
    """A resume may run more generations, never fewer: the state's later ones cannot be undone,
    and reporting them under the smaller number would describe another run."""
    done = len(state["fitness"]) if state else 0
    if done > generations:
        raise AlignmentError(f"--resume: the run in {out} has already run {done} generations, more than "
                             f"--generations {generations}; pass --generations {done} or more, or choose another "
                             "--output")


def _finished(out: Path, state: dict | None, settings: dict) -> dict | None:
    """The summary of a run whose every generation is searched and reported, or None. Its report is
    kept: a resume with other report settings (``REPORT_KEYS``) is refused rather than rewriting it."""
    path = out / "alignment.json"
    if not state or len(state["fitness"]) != settings["generations"] or not path.exists():
        return None
    summary = read_json(path, "--resume", "restore it, or pass --overwrite to run it again", AlignmentError)
    if len(summary.get("history", [])) != len(state["fitness"]):
        return None  # written before the last generations: they still need their report
    diff = settings_differences(summary["settings"], settings, REPORT_KEYS)
    if diff:
        raise AlignmentError(f"--resume: the run in {out} is finished and its alignment.json was made with other "
                             f"report settings ({'; '.join(diff)}); it is kept as it is: resume with the saved "
                             "settings, pass --overwrite to run it again, or choose another --output")
    return summary


@dataclass
class Search:
    """What the optimiser has done so far: saved after each generation, restored on resume. A candidate
    whose loss is NaN or infinite (its soft prompt overflows the model) is stored as None and counts as
    the worst loss (``worst``)."""

    fitness: list[list[float | None]] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    best_z: np.ndarray | None = None
    best_loss: float = float("inf")

    def record(self, z, losses: list[float]) -> None:
        finite = [v for v in losses if math.isfinite(v)]
        i = int(np.argmin(worst(losses)))
        if finite and losses[i] < self.best_loss:
            self.best_z, self.best_loss = np.asarray(z[i], dtype=float), float(losses[i])
        self.fitness.append([float(v) if math.isfinite(v) else None for v in losses])
        self.history.append({"generation": len(self.fitness), "best": min(finite) if finite else None,
                             "mean": float(np.mean(finite)) if finite else None, "best_so_far": self.best_loss,
                             "nonfinite": len(losses) - len(finite)})

    @property
    def nonfinite(self) -> int:
        """How many candidates so far had a NaN or infinite loss."""
        return sum(v is None for losses in self.fitness for v in losses)

    def state(self, settings: dict, hidden: int, population) -> dict:
        return {"settings": settings, "hidden_size": hidden, "fitness": self.fitness, "history": self.history,
                "population": np.asarray(population).tolist(), "best_z": self.best_z.tolist(),
                "best_loss": self.best_loss}


def worst(losses) -> list[float]:
    """The losses as the optimiser is told them: a NaN, infinite or missing (None) one is +inf, the worst
    (a NaN would compare as neither better nor worse: DE would keep or drop it by accident)."""
    return [float(v) if v is not None and math.isfinite(v) else math.inf for v in losses]


def make_space(lm, cfg: AlignConfig) -> SoftPromptSpace:
    init_ids = lm.tokenizer(cfg.init_text, add_special_tokens=False)["input_ids"]
    return SoftPromptSpace(lm.model.get_input_embeddings(), virtual_tokens=cfg.virtual_tokens,
                           subspace_dim=cfg.subspace_dim, seed=cfg.seed, init=cfg.init, init_ids=init_ids)


def replay(opt, state: dict | None) -> Search:
    """A fresh optimiser told the saved losses again is in the saved run's exact state."""
    if not state:
        return Search()
    for fitness in state["fitness"]:
        opt.ask()
        opt.tell(worst(fitness))
    return Search(state["fitness"], state["history"], np.array(state["best_z"]), state["best_loss"])


def order_parts(scorer: TaskScorer, order: SearchOrder) -> dict[str, list[int]]:
    """The positions of the scorer's documents in each part of ``order`` (none without parts)."""
    return order.part_items([item.doc for item in scorer.items])


def order_losses(scorer: TaskScorer, lls, objective, parts: dict[str, list[int]]) -> dict[str, float]:
    """One candidate's loss per part (``order_parts``), from the task's own metrics of that part's documents;
    without parts one entry, ``task``: the objective of all of them."""
    if not parts:
        return {"task": float(objective(scorer.metrics(lls, keys=LOSS_KEYS)))}
    return {part: float(objective(scorer.metrics(lls, keys=LOSS_KEYS, items=items))) for part, items in parts.items()}


def score_candidates(scorer: TaskScorer, space: SoftPromptSpace, z, batch_size: int, objective,
                     order: SearchOrder) -> list[float]:
    """The loss of every candidate z (``order``'s combination of the objective of the task's own indices),
    in batched passes; under torchrun each process runs its share of the forward batches and every process
    gets all losses, in candidate order. A candidate with a NaN or infinite log-likelihood has the loss NaN."""
    lls = scorer.option_loglikelihoods(space.prompts(torch.as_tensor(z)), batch_size)
    parts = order_parts(scorer, order)
    return [combined(order_losses(scorer, c, objective, parts)) if all(map(stats.finite_scores, c)) else math.nan
            for c in lls]


def search(opt, scorer: TaskScorer, space: SoftPromptSpace, cfg: AlignConfig, done: Search, label: str,
           save, objective, order: SearchOrder) -> Search:
    """Generations from where ``done`` stopped to ``cfg.generations``; ``save(population)`` after each.
    A candidate whose loss is NaN or infinite counts as the worst (with a warning); a first generation
    in which every loss is, stops the run (``_no_finite_loss``)."""
    bar = tqdm(range(len(done.fitness), cfg.generations), desc=label, initial=len(done.fitness),
               total=cfg.generations, unit="gen", disable=not distributed.is_main())
    warned = False
    for _ in bar:
        # every process asks (its optimiser stays in step), all score the main process's candidates: CMA-ES samples
        # through LAPACK, whose last bits may differ between nodes of other CPUs
        z = distributed.from_main(opt.ask())
        losses = score_candidates(scorer, space, z, cfg.batch_size, objective, order)
        generation = len(done.fitness) + 1
        bad = sum(not math.isfinite(v) for v in losses)
        if bad == len(losses) and done.best_z is None:
            raise _no_finite_loss(scorer, cfg, generation, objective, order)
        if bad and not warned and distributed.is_main():
            warned = True
            log.warning("generation %d: %d of %d candidates have a NaN or infinite loss (their soft prompts overflow "
                        "the model in %s): each counts as the worst loss; alignment.json counts them (history: "
                        "nonfinite); a smaller --bound (now %g) avoids them", generation, bad, len(losses), cfg.dtype,
                        cfg.bound)
        opt.tell(worst(losses))
        done.record(z, losses)
        save(z)
        mean = done.history[-1]["mean"]
        bar.set_postfix(best=f"{done.best_loss:.2f}", mean="-" if mean is None else f"{mean:.2f}")
    if done.nonfinite and distributed.is_main():
        log.warning("%d of %d candidates had a NaN or infinite loss and counted as the worst (alignment.json: "
                    "nonfinite_candidates)", done.nonfinite, sum(map(len, done.fitness)))
    return done


def _no_finite_loss(scorer: TaskScorer, cfg: AlignConfig, generation: int, objective, order: SearchOrder
                    ) -> AlignmentError:
    """No candidate has a finite loss and none had: the search has nothing to rank. The model without a
    soft prompt tells whose fault it is: the model's (a NaN weight, an overflow in its dtype), the task's (its
    aggregation gives no loss from finite answers: the warning above says why), or the prompts'."""
    lls = scorer.option_loglikelihoods(None, cfg.batch_size)[0]
    bad = stats.nonfinite_documents(lls)
    if bad:
        return AlignmentError(
            f"generation {generation}: the plain model (no soft prompt) gives a NaN or infinite log-likelihood on "
            f"{bad} of {len(lls)} items of {scorer.task_name} in --dtype {cfg.dtype}, so every candidate's loss is "
            f"NaN: {stats.nonfinite_model_fix(cfg.dtype)}")
    if not math.isfinite(combined(order_losses(scorer, lls, objective, order_parts(scorer, order)))):
        return AlignmentError(
            f"generation {generation}: {scorer.task_name}'s loss (the objective of its metrics) is NaN for the plain "
            "model too, though its log-likelihoods are finite: no soft prompt can change that (see any warning above)")
    return AlignmentError(
        f"generation {generation}: every candidate's loss is NaN or infinite while the plain model's log-likelihoods "
        f"on {scorer.task_name} are finite: the soft prompts overflow the model; use a smaller --bound (now "
        f"{cfg.bound:g})" + (" or --dtype float32" if cfg.dtype != "float32" else ""))


def _check_report_answers(lls, who: str, task: str, fix: str) -> None:
    """The report's numbers are never NaN: a baseline or the fitted prompt whose log-likelihoods are not
    all finite stops the run before anything is written."""
    bad = stats.nonfinite_documents(lls)
    if bad:
        raise AlignmentError(
            f"the report (scored in float32): {who} gives a NaN or infinite log-likelihood on {bad} of {len(lls)} "
            f"items of {task}, so its numbers would be NaN; nothing is written (the search is kept in "
            f"{STATE_FILE}): {fix}")


def _prompt_fix(cfg: AlignConfig) -> str:
    return (f"the fitted soft prompt overflows the model; run again with --overwrite and a smaller --bound "
            f"(now {cfg.bound:g})")


def report_scorer(lm, cfg: AlignConfig, task: str, task_manager) -> TaskScorer:
    """A scorer for the numbers alignment.json reports: every item in full, as lm_eval scores the
    checkpoint. Shared stems agree with it to float rounding only, which in bfloat16 is several L1
    points (docs/bench_h200.md), so they serve the search alone."""
    return TaskScorer(lm, task, task_manager, chat_template=cfg.chat_template, shared_stems=False)


def in_float32(lm, cfg: AlignConfig, score):
    """``score(model)`` with the model in float32, as the recorded lm_eval command loads it: ``lm`` if
    it is float32, else the base model loaded again in float32 from its files (half precision differs
    by rounding: 0.002 in the tiny model's margin, several L1 points in bfloat16 on SmolLM2; and a half
    copy cast up lacks the float32 files' last bits). The search model waits on the CPU meanwhile."""
    if lm.model.dtype == torch.float32:
        return score(lm)
    device = lm.model.device
    lm.model.to("cpu")
    try:
        return score(load_lm(cfg, dtype="float32"))
    finally:
        gc.collect()  # the float32 copy goes before the search model returns to the device
        if device.type == "cuda":
            torch.cuda.empty_cache()
        lm.model.to(device)


@dataclass
class Fitted:
    """The fitted prompt as the report scores it (float32, every item in full): the task's metrics and item
    means, the report, the task's constants, the loss per part of the search order and each part's item means."""

    final: dict
    report: dict
    means: dict
    constants: dict
    losses: dict[str, float]
    part_means: dict[str, dict]


def final_report(lm, cfg: AlignConfig, tasks: CountryTasks, prompt, task_manager, target, objective) -> Fitted:
    """The fitted prompt's metrics, item means and loss, and the comparison with the baselines unless
    skipped (in float32); every number with its interval."""
    from culture_tasks.survey.tasks import item_means

    def score(lm):
        scorer = report_scorer(lm, cfg, tasks.vsm13, task_manager(tasks.metadata))
        lls = scorer.option_loglikelihoods(prompt.unsqueeze(0), cfg.batch_size)[0]
        _check_report_answers(lls, "the fitted soft prompt", tasks.vsm13, _prompt_fix(cfg))
        final, means = scorer.metrics(lls), scorer_item_means(scorer, lls)
        if cfg.baselines:
            report = baselines(lm, cfg, tasks, scorer, prompt, final, means, task_manager, target)
        else:
            report = {"vsm13_l1": {cfg.optimizer: final["vsm13_l1"]},
                      "vsm13_l1_ci": {cfg.optimizer: interval(final, "vsm13_l1")}}
        parts = order_parts(scorer, tasks.order)
        part_means = {part: item_means([scorer.items[i].doc for i in items], [lls[i] for i in items])
                      for part, items in parts.items()}
        return Fitted(final, report, means, task_constants(scorer), order_losses(scorer, lls, objective, parts),
                      part_means)

    return in_float32(lm, cfg, score)


def country_comparison(indices: dict, target, data_dir: str | None, metrics: dict, means: dict) -> dict:
    """Where a profile ranks the target among all Hofstede countries (docs/validity.md): the
    country-specific check that the raw L1 cannot give; margin and rank with the intervals of the
    task's vsm13_margin / vsm13_rank (``metrics``: the task's results for the same prompt), the reciprocal
    rank with the rank's (a monotone map of its percentiles), and the distance, no task metric, with the
    item-pair interval of ``means`` (the prompt's item means; the distance is blind to the constants)."""
    from culture_tasks.survey.compare import compare_vsm13, margin_and_rank, replicate_indices

    reference = hofstede_reference(data_dir)
    result = compare_vsm13({d: indices[d] for d in DIMENSIONS}, target, reference, data_dir=data_dir)
    out = {k: result[k] for k in ("target", "dims", "countries", "distance", "rank", "reciprocal_rank", "margin")}
    out["rank_ci"], out["margin_ci"] = interval(metrics, "vsm13_rank"), interval(metrics, "vsm13_margin")
    low, high = out["rank_ci"]
    out["reciprocal_rank_ci"] = [1.0 / high, 1.0 / low] if low > 0 and high > 0 else [math.nan, math.nan]
    replicates = margin_and_rank(replicate_indices(means), target, reference, data_dir=data_dir)["distance"]
    out["distance_ci"] = list(stats.percentile_interval(replicates))
    return out


def write_outputs(lm, cfg: AlignConfig, out: Path, country: str, tasks: CountryTasks, settings: dict,
                  space: SoftPromptSpace, found: Search, prompt, fitted: Fitted, loss_ci: list[float],
                  part_cis: dict[str, list[float]]) -> dict:
    """Checkpoint, alignment.json and the loss curve (by the main process only)."""
    summary = {
        "base_model": absolute_if_local(cfg.model),  # the folder, from any working directory
        "target": {"country": country, "task": tasks.vsm13, "scores": tasks.scores},
        "settings": settings,
        "dtype_loaded": loaded_dtype(lm),  # the search's weights as loaded (settings.dtype may be auto)
        "inputs": _inputs(settings, tasks),
        "init_token_ids": space.init_ids,
        "history": found.history,
        "nonfinite_candidates": found.nonfinite,  # candidates with a NaN or infinite loss: counted as the worst
        "final": fitted.final,
        "objective": cfg.objective,
        # the objective of the final prompt: minus the task's vsm13_margin (contrastive), its vsm13_l1 (l1); under
        # --option-order worst the larger of the objective over the listed and the reversed task (loss_by_order)
        "loss": combined(fitted.losses),
        "loss_ci": loss_ci,
        **({"loss_by_order": {part: {"task": task, "loss": fitted.losses[part], "loss_ci": part_cis.get(part)}
                              for part, task in zip(tasks.order.parts, tasks.loss_tasks)}} if tasks.order.parts else {}),
        "report": fitted.report,
        "lm_eval_command": tasks.lm_eval_command(cfg.model, str(out), cfg.chat_template),
        "world_size": distributed.world_size(),
        "environment": provenance.environment(cfg.device),
    }
    if distributed.is_main():  # alignment.json last: it marks the run finished (``_finished``)
        # a resume to more generations replaces the checkpoint an earlier alignment.json describes: that
        # report goes first, so that a run killed while writing never shows it beside the new prompt
        (out / "alignment.json").unlink(missing_ok=True)
        _save_checkpoint(lm, prompt, out, cfg)
        worse = f", the worse of the {' and '.join(tasks.order.parts)} orders" if tasks.order.parts else ""
        plots.loss_curve(found.history, out / "loss_curve.png", f"{country}: {cfg.objective} ({cfg.optimizer})",
                         LOSS_LABELS[cfg.objective] + worse)
        _write_json(out / "alignment.json", summary)
    distributed.barrier()  # the next country starts when this one's files are written
    return summary


def align_country(lm, cfg: AlignConfig, country: str, out: Path, task_manager) -> dict:
    tasks = country_tasks(country, cfg.target, cfg)
    target = tasks.target
    objective = make_objective(cfg.objective, target, data_dir=cfg.data_dir)
    settings = cfg.for_country(country)
    hidden = int(lm.model.get_input_embeddings().weight.shape[1])
    # everything that may fail is built before _check_output stores the settings of a new run:
    # a run that stopped here would leave a folder a corrected rerun calls "not empty"
    scorer = TaskScorer(lm, tasks.vsm13, task_manager(tasks.metadata), chat_template=cfg.chat_template,
                        shared_stems=cfg.shared_stems)
    space = make_space(lm, cfg)
    opt = make_optimizer(cfg.optimizer, cfg.subspace_dim, population=cfg.population, bound=cfg.bound,
                         seed=cfg.seed, settings=cfg.optimizer_args)
    # the state and the finished report as the main process read them, on every process
    state = distributed.from_main(_check_output(out, cfg.resume, settings, hidden))
    finished = distributed.from_main(_finished(out, state, settings) if distributed.is_main() else None)
    if finished:
        log.info("%s: the run in %s is finished; its report is kept", country, out)
        return finished
    done = replay(opt, state)
    if state:
        log.info("resumed %s at generation %d", country, len(done.fitness))
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)

    def save(population):
        distributed.main_process_only(_write_json)(out / STATE_FILE, done.state(settings, hidden, population))

    try:
        found = search(opt, scorer, space, cfg, done, f"{tasks.key} {cfg.optimizer}", save, objective, tasks.order)
    except AlignmentError:
        if state is None and not done.fitness and distributed.is_main():
            (out / RUN_SETTINGS).unlink(missing_ok=True)  # nothing saved: the corrected rerun finds the output new
        raise
    prompt = space.prompts(torch.as_tensor(found.best_z))[0]
    fitted = final_report(lm, cfg, tasks, prompt, task_manager, target, objective)
    part_cis = {}
    if fitted.part_means:
        loss_ci, how, part_cis = parts_loss_interval(objective, fitted.part_means, fitted.constants)
    else:
        loss_ci, how = loss_interval(cfg.objective, objective, fitted.final, fitted.means, fitted.constants)
    fitted.report["intervals"] = {"level": stats.LEVEL, "metrics": "the task's own, as lm_eval reports them",
                                  "loss": how, **({"change_vs_plain": PAIRED} if cfg.baselines else {}),
                                  **({"loss_by_order": f"each order's objective in the same {stats.ITERS} item-pair "
                                                       f"bootstrap resamples (seed {stats.SEED})"} if part_cis else {})}
    return write_outputs(lm, cfg, out, country, tasks, settings, space, found, prompt, fitted, loss_ci, part_cis)


def baselines(lm, cfg: AlignConfig, tasks: CountryTasks, fitted: TaskScorer, prompt, final: dict, means: dict,
              task_manager, target) -> dict:
    """The paper's comparison (plain, persona, soft prompt) plus held-out checks, each number with
    its interval; the changes against the plain model with paired ones."""
    name = cfg.optimizer
    tm = task_manager(tasks.metadata)

    def answers(task: str, soft, who: str, scorer: TaskScorer | None = None):
        """The scorer of a task and its log-likelihoods under one prompt (None: the plain model), all finite."""
        s = scorer or report_scorer(lm, cfg, task, tm)
        lls = s.option_loglikelihoods(None if soft is None else soft.unsqueeze(0), cfg.batch_size)[0]
        fix = stats.nonfinite_model_fix("float32") if soft is None else _prompt_fix(cfg)
        _check_report_answers(lls, who, task, fix)
        return s, lls

    def score(task: str, soft, who: str) -> dict:
        s, lls = answers(task, soft, who)
        return s.metrics(lls)

    def score_with_means(task: str, soft, who: str) -> tuple[dict, dict]:
        s, lls = answers(task, soft, who)
        return s.metrics(lls), scorer_item_means(s, lls)

    def vsm13(task: str, who: str, scorer: TaskScorer | None = None) -> tuple[dict, dict]:
        """A baseline's VSM13 metrics and item means (for the paired changes)."""
        s, lls = answers(task, None, who, scorer)
        return s.metrics(lls), scorer_item_means(s, lls)

    scored, item = {name: final}, {name: means}
    plain, plain_means = vsm13(tasks.vsm13, "the plain baseline (no soft prompt)", fitted)
    scored, item = {"plain": plain, **scored}, {"plain": plain_means, **item}
    if tasks.persona:
        scored["persona"], item["persona"] = vsm13(tasks.persona, "the persona baseline (the plain model with the "
                                                                  "persona prompt)")
    report = {"vsm13_l1": {k: m["vsm13_l1"] for k, m in scored.items()},
              "vsm13_l1_ci": {k: interval(m, "vsm13_l1") for k, m in scored.items()},
              "indices": {k: {d: m[d] for d in DIMENSIONS} for k, m in scored.items()},
              "indices_ci": {k: {d: interval(m, d) for d in DIMENSIONS} for k, m in scored.items()}}
    reversed_ = {"plain": score_with_means(tasks.reversed, None, "the plain baseline on the reversed options"),
                 name: score_with_means(tasks.reversed, prompt, "the fitted soft prompt on the reversed options")}
    report["vsm13_l1_reversed"] = {k: m["vsm13_l1"] for k, (m, _) in reversed_.items()}
    report["vsm13_l1_reversed_ci"] = {k: interval(m, "vsm13_l1") for k, (m, _) in reversed_.items()}
    # does the fitted prompt's place hold when the options are asked in an order the search did not see?
    report["other_orders"] = {}
    for order, task in tasks.other_orders.items():
        asked = reversed_ if task == tasks.reversed else {
            "plain": score_with_means(task, None, f"the plain baseline, options {order}"),
            name: score_with_means(task, prompt, f"the fitted soft prompt, options {order}")}
        report["other_orders"][order] = {
            "task": task, "comparison": {k: country_comparison({d: m[d] for d in DIMENSIONS}, target, cfg.data_dir,
                                                               m, means) for k, (m, means) in asked.items()}}
    if tasks.wvs:
        keys = ("wvs_jsd", "wvs_w1", "wvs_majority")
        before = score(tasks.wvs, None, "the plain baseline on WVS")
        after = score(tasks.wvs, prompt, "the fitted soft prompt on WVS")
        report["wvs"] = {"task": tasks.wvs, "plain": with_intervals(before, keys), name: with_intervals(after, keys)}
    report["comparison"] = {k: country_comparison(report["indices"][k], target, cfg.data_dir, m, item[k])
                            for k, m in scored.items()}
    report["change_vs_plain"] = change_vs_plain(report, item, task_constants(fitted), target,
                                                hofstede_reference(cfg.data_dir))
    # each prompt's VSM13 item means: what an interval over several runs (benchmarks/aligner_table.py's MRR over
    # targets) resamples, paired item pair by item pair, as one run's intervals are
    report["item_means"] = {k: {str(i): float(v) for i, v in sorted(m.items())} for k, m in item.items()}
    return report


def _save_checkpoint(lm, prompt: torch.Tensor, out: Path, cfg: AlignConfig) -> None:
    with staged_files(out) as tmp:
        save_prompt_tuning_adapter(lm.model, prompt, tmp, cfg.model, init=cfg.init, init_text=cfg.init_text)


def check_countries(cfg: AlignConfig) -> None:
    """Every country known, comparable under the objective (Hofstede's file has only one dimension of
    some, e.g. Andorra), and none named twice (``USA usa``, ``CHN China``: a second spelling would align
    the country again, into the folder the first filled, after the first's whole run)."""
    seen: dict[str, str] = {}
    for country in cfg.countries:
        target = resolve_target(country, cfg.target, cfg.data_dir)
        try:
            make_objective(cfg.objective, target, data_dir=cfg.data_dir)
        except ValueError as err:
            raise AlignmentError(f"--country {country!r}: {err}") from None
        if target.code in seen:
            raise AlignmentError(f"--country names one country twice ({seen[target.code]!r} and {country!r} are both "
                                 f"{target.code}); give each country once")
        seen[target.code] = country


def _countries_record(countries: list[str]) -> dict:
    return {"countries": list(countries)}


def _store_countries(out: Path, countries: list[str]) -> None:
    """The list of countries of a run of several, in its output (``COUNTRIES_FILE``): what a --resume compares."""
    save_settings(out / COUNTRIES_FILE, _countries_record(countries))


def _check_countries(out: Path, countries: list[str]) -> None:
    """A --resume of several countries into ``out`` resumes the countries it was made with (``COUNTRIES_FILE``):
    another list would resume some of them and start others beside the folders of those left out, one output
    holding two runs. An output whose country folders hold runs stored before the list was is refused with the way
    to add it (no guess: its folders may be those of several runs); one in which no run was stored yet (a run killed
    before its first country stored its settings) has nothing to mix, and takes the list given."""
    path = out / COUNTRIES_FILE
    given = _countries_record(countries)
    stored = load_settings(path, AlignmentError)
    if stored is None:
        if (out / RUN_SETTINGS).exists() or (out / STATE_FILE).exists():
            raise AlignmentError(f"--resume: {out} holds the run of one country ({RUN_SETTINGS}), not one folder per "
                                 "country; resume it with its one --country, or choose another --output")
        runs = sorted(p.name for p in out.iterdir() if p.is_dir() and any((p / f).exists()
                                                                          for f in (RUN_SETTINGS, STATE_FILE)))
        if runs:
            raise AlignmentError(
                f"--resume: {out} holds the country runs {', '.join(runs)} but no {COUNTRIES_FILE} (made before the "
                f"countries of a run were stored), so the countries it was made with cannot be checked; if it was made "
                f"with --country {shlex.join(countries)}, write {json.dumps(given)} to {path}, pass --overwrite to "
                "start again, or choose another --output")
        _store_countries(out, countries)
        return
    if not isinstance(stored, dict) or not isinstance(stored.get("countries"), list):
        raise AlignmentError(f"{path} holds no list of countries (\"countries\": [...]); restore the file, or start "
                             "again with --overwrite")
    diff = settings_differences(stored, given, ["countries"])
    if diff:
        raise AlignmentError(f"--resume: the run in {out} was made with other countries ({diff[0]}; stored in {path}); "
                             f"resume it with --country {shlex.join(map(str, stored['countries']))}, pass --overwrite "
                             "to start again, or choose another --output")


def check_model(model: str, chat_template: bool = False) -> None:
    """A model named by a path is a folder (a hub id never starts with / . or ~); ``~`` is expanded by
    the shell only, not here, by the loader or by the fingerprint. Its config is read here, before
    anything is locked or loaded: a folder without one or a hub id out of reach is a one-line error,
    and so are a config peft makes no prompt-tuning checkpoint for and --chat-template for a tokenizer
    without a chat template."""
    from transformers import AutoConfig, AutoTokenizer

    if model.startswith("~"):
        raise AlignmentError(f"--model {model}: a path starting with ~ is not expanded; give the folder's full path")
    if (os.path.isabs(model) or model.startswith(".") or os.path.exists(model)) and not Path(model).is_dir():
        raise AlignmentError(f"--model {model}: no such model folder; give a local model folder or a hub id")
    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise AlignmentError(f"--model {model}: no model config could be read ({' '.join(str(err).split())}); give "
                             "a model folder holding config.json or a hub id within reach") from None
    try:
        check_prompt_tuning_fits(config)
    except ValueError as err:
        raise AlignmentError(f"--model {model}: peft makes no prompt-tuning checkpoint for its {config.model_type} "
                             f"config ({err}), so no search could be saved; align a model with attention "
                             "layers") from None
    tokenizer = AutoTokenizer.from_pretrained(model)
    if len(tokenizer) > config_vocab(config):
        raise AlignmentError(f"--model {model}: its tokenizer holds {len(tokenizer)} tokens, its config embeds "
                             f"{config_vocab(config)}: lm_eval scores a prompt checkpoint (peft=) after growing the "
                             "embeddings to the tokenizer's length with random rows, so it would not score the "
                             "search's losses; give a model whose embeddings cover its tokenizer")
    if chat_template and not tokenizer.chat_template:
        raise AlignmentError(f"--chat-template: the tokenizer of {model} has no chat template; leave out --chat-template")


def run(cfg: AlignConfig) -> list[dict]:
    """Align every country of ``cfg``; one checkpoint each (``output/<country>`` if several)."""
    out = Path(cfg.output)
    overwrite = bool(getattr(cfg, "overwrite", False))
    single = len(cfg.countries) == 1
    targets = [(c, out if single else safe_join(out, c.lower().replace(" ", "_"), AlignmentError))
               for c in cfg.countries]
    check_countries(cfg)  # before loading the model or writing
    check_model(cfg.model, cfg.chat_template)
    inputs = [cfg.model, cfg.data_dir or os.environ.get(ENV_VAR), getattr(cfg, "config_file", None)]
    with contextlib.ExitStack() as locks:
        locks.enter_context(OutputLock.for_folder(out, AlignmentError))
        main = main_process()  # under torchrun the main process checks and writes for all
        if cfg.resume and main and single:  # a folder that holds only a killed write's temporaries is then new
            remove_temporaries(out)
        # under torchrun: join the process group; the others follow the main one's reading of the output
        # (--resume into an empty one is a new run)
        distributed.init_from_env()
        # the list of countries of a run of several is its own, not yet a run: an output holding it alone is new
        ignore = (LOCK_NAME,) if single else (LOCK_NAME, COUNTRIES_FILE)
        mode = distributed.from_main(claim_output(out, overwrite=overwrite, resume=cfg.resume, inputs=inputs,
                                                  error=AlignmentError, models=[cfg.model], ignore=ignore)
                                     if main else None)
        folders = [] if single else [path for _, path in targets]
        for path in folders:  # a run into one country's folder (--output out/usa) holds its lock
            if path.exists() and not path.is_dir():
                raise AlignmentError(f"{path} is a file, not a country folder; move it or choose another --output")
            locks.enter_context(OutputLock.for_folder(path, AlignmentError))
            if cfg.resume and main:
                remove_temporaries(path)
        if folders and main:  # before the model loads: a resume with another list is refused
            if mode == "resume":
                remove_killed_writes(out, (COUNTRIES_FILE,))
                _check_countries(out, cfg.countries)
            elif mode == "new":
                _store_countries(out, cfg.countries)
        if mode == "resume":  # settings compared before the model is loaded; every process learns what the main found
            finished = distributed.from_main([_finished(path, _check_output(path, True, cfg.for_country(country), None),
                                                        cfg.for_country(country)) for country, path in targets]
                                             if main else None)
            if all(finished):
                log.info("every run in %s is finished; nothing to do", out)
                return finished
        torch.manual_seed(cfg.seed)
        lm = load_lm(cfg)
        if mode == "replace" and main:  # the others would empty it again, after the main process wrote there
            _clear(out, folders)
            if folders:
                _store_countries(out, cfg.countries)
        manager = functools.partial(task_manager, data_dir=cfg.data_dir)
        return [align_country(lm, cfg, country, path, manager) for country, path in targets]


def _clear(out: Path, folders: list[Path]) -> None:
    """Set ``out`` aside for --overwrite, keeping its own and the country folders' locks."""
    set_aside_around(out, folders)
