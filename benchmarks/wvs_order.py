"""Does a model's World Values Survey alignment depend on the order its options are listed in?

    lm_eval --model hf --model_args pretrained=<model>,dtype=float32 --include_path culture_tasks \\
        --tasks wvs,wvs_reversed --metadata '{"data_dir": "<data root>"}' --output_path runs/wvs_order --log_samples
    python -m benchmarks.wvs_order runs/wvs_order

``wvs_<country>`` and ``wvs_<country>_reversed`` ask the same questions with the same options, listed the other
way round: a change a respondent would not notice. Per country and metric the script reads both per-sample logs
and prints each order's value with the task's interval over questions, whether each order's interval holds the
other order's value, and the shift (reversed minus listed) with its paired interval: the same questions
resampled in both orders, so what the questions share cancels (``stats.paired_bootstrap``). A shift whose
interval leaves out 0 is the model's lean towards a position, which no interval of one order shows.

*Both orders* averages each question's two answer distributions (in the scale's order, read back from the logged
log-likelihoods) before comparing with the country: a lean towards a position that is the same in both orders
cancels within the question, as in the ``vsm13_<country>_balanced`` tasks. Its interval resamples questions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.results_folder import read_folder
from culture_tasks import stats
from culture_tasks.jsonl import read_jsonl_lines
from culture_tasks.leaderboard import find_result_files, load_runs
from culture_tasks.survey import metrics as survey_metrics
from culture_tasks.survey.countries import listed_countries
from culture_tasks.survey.instruments import instrument

METRICS = ("wvs_jsd", "wvs_w1", "wvs_majority")
# each metric of one question from the model's answer distribution p and the country's q (as process_results_wvs)
SCORES = {"wvs_jsd": survey_metrics.jsd_similarity, "wvs_w1": survey_metrics.w1_similarity,
          "wvs_majority": survey_metrics.majority_agreement}


def _questions(run, task: str, metric: str) -> dict:
    """q_id -> the logged value of ``metric`` for that question."""
    found = run.items(task, metric)
    if found is None:
        raise ValueError(f"{run.label}: no per-sample log of {task} (run lm_eval with --log_samples)")
    return {q_id: float(value) for _, value, q_id in found.values()}


def _answers(run, task: str) -> dict:
    """q_id -> (the model's answer distribution in the scale's order, the country's) from the task's log."""
    from culture_tasks.survey.tasks import _in_code_order

    out = {}
    for _, row in read_jsonl_lines(run.samples[task]):
        if row.get("filter", "none") == "none":
            doc = row["doc"]
            out[doc["q_id"]] = (_in_code_order(doc, row["filtered_resps"]), np.asarray(doc["country_dist"], dtype=float))
    return out


def both_orders(run, listed: str, reversed_: str, logged: dict[str, dict]) -> dict[str, list[float]]:
    """Per metric, each question's value (in q_id order) with its two answer distributions averaged. Each order's
    own distribution must give the value its log holds: a log whose answers do not is not this task's."""
    answers = {task: _answers(run, task) for task in (listed, reversed_)}
    order = sorted(answers[listed])
    for task in (listed, reversed_):
        for metric in METRICS:
            again = [SCORES[metric](*answers[task][q]) for q in order]
            if not np.allclose(again, [logged[task][metric][q] for q in order], atol=1e-6, equal_nan=True):
                raise ValueError(f"{run.label}: the logged answers of {task} do not give its logged {metric}")
    return {metric: [SCORES[metric]((answers[listed][q][0] + answers[reversed_][q][0]) / 2, answers[listed][q][1])
                     for q in order] for metric in METRICS}


def country_rows(run) -> list[dict]:
    """Per country asked in both orders and metric: both values, both intervals and the paired shift."""
    wvs = instrument("wvs")
    rows = []
    for country in listed_countries():
        if not wvs.covers(country):
            continue
        listed, reversed_ = wvs.task(country["slug"]), wvs.task(country["slug"], "_reversed")
        if listed not in run.metrics or reversed_ not in run.metrics:
            continue
        logged = {task: {metric: _questions(run, task, metric) for metric in METRICS} for task in (listed, reversed_)}
        if sorted(logged[listed]["wvs_jsd"]) != sorted(logged[reversed_]["wvs_jsd"]):
            raise ValueError(f"{run.label}: {listed} and {reversed_} logged other questions; ask both with the "
                             "same --metadata questions")
        both = both_orders(run, listed, reversed_, logged)
        for metric in METRICS:
            a, b = logged[listed][metric], logged[reversed_][metric]
            order = sorted(a)
            paired = stats.paired_bootstrap(stats.mean, [a[q] for q in order], [b[q] for q in order])
            values = (stats.mean([a[q] for q in order]), stats.mean([b[q] for q in order]))
            intervals = tuple(tuple(run.metrics[t][metric + s] for s in stats.CI_SUFFIXES) for t in (listed, reversed_))
            rows.append({"country": country["slug"], "metric": metric, "questions": len(order), "values": values,
                         "intervals": intervals,
                         "held": tuple(low <= values[1 - own] <= high for own, (low, high) in enumerate(intervals)),
                         "shift": (paired["diff"], paired["low"], paired["high"]),
                         "both": (stats.mean(both[metric]), *stats.bootstrap_ci(stats.mean, both[metric]))})
    if not rows:
        raise ValueError(f"{run.label}: no country asked as both wvs_<country> and wvs_<country>_reversed")
    return rows


def rank_agreement(rows: list[dict], metric: str) -> float:
    """Spearman's rank correlation, over the countries, of ``metric`` with the options listed and reversed: does
    the order change which countries the model is closest to? NaN for fewer than three countries."""
    from scipy.stats import spearmanr

    mine = [r["values"] for r in rows if r["metric"] == metric]
    return float(spearmanr(*zip(*mine)).statistic) if len(mine) >= 3 else float("nan")


def render(label: str, rows: list[dict]) -> str:
    lines = [f"{label}", "", "| country | metric | questions | listed [interval] | reversed [interval] | "
             "each interval holds the other | shift reversed − listed [paired interval] | both orders [interval] |",
             "|---|---|---:|---|---|---|---|---|"]
    for r in rows:
        (a, b), ((al, ah), (bl, bh)), (d, dl, dh), (c, cl, ch) = r["values"], r["intervals"], r["shift"], r["both"]
        held = " / ".join("yes" if h else "no" for h in r["held"])
        lines.append(f"| {r['country']} | {r['metric']} | {r['questions']} | {a:.3f} [{al:.3f}, {ah:.3f}] | "
                     f"{b:.3f} [{bl:.3f}, {bh:.3f}] | {held} | {d:+.3f} [{dl:+.3f}, {dh:+.3f}] | "
                     f"{c:.3f} [{cl:.3f}, {ch:.3f}] |")
    for metric in METRICS:
        mine = [r for r in rows if r["metric"] == metric]
        away = sum(not r["shift"][1] <= 0 <= r["shift"][2] for r in mine)
        held = sum(sum(r["held"]) for r in mine)
        lines.append(f"\n{metric}: the paired interval of the shift leaves out 0 for {away} of {len(mine)} countries; "
                     f"an order's interval holds the other order's value in {held} of {2 * len(mine)} cases; "
                     f"the countries' ranks in the two orders correlate {rank_agreement(rows, metric):+.2f} (Spearman)")
    return "\n".join(lines)


def read(folder: Path) -> list[tuple[str, list[dict]]]:
    """(label, ``country_rows``) of every run in the folder."""
    return [(run.label, country_rows(run)) for run in load_runs(find_result_files([str(folder)]))]


def main(argv: list[str] | None = None) -> int:
    code, runs = read_folder(argv, __doc__, "wvs_order", read)
    for label, rows in runs or []:
        print(render(label, rows))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
