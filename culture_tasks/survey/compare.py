"""Compare a model's survey profile with every reference country, not only the target.

A model's VSM13 indices carry an unknown offset (the manual's constants, 0 here), so an absolute
distance to one country mostly measures that offset. Here each profile is compared with every
country of Hofstede's file in z-space (each dimension divided by its spread across the reference
countries, the target left out), after removing the common offset between the two profiles;
the target's rank among all countries, top-1, reciprocal rank and margin follow, and none of them
changes when the same constant is added to every index of a profile. WVS is compared the same
way with 1 - JSD to every country that has WVS data. docs/validity.md explains the method.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from culture_tasks import stats
from culture_tasks.survey import metrics
from culture_tasks.survey.vsm13 import (DIMENSIONS, FORMULAS, Target, constants_by_dimension, find_target,
                                        load_hofstede, vsm13_indices, vsm13_loss)

RAW_L1_LABEL = "raw L1 (C=0)"
TIE_TOLERANCE = 1e-9  # distances this close are a tie (float noise of equal profiles)
INDEX_TIE = 1e-3  # index points: closer steered indices are one value (float32 noise across machines ~1e-4)
MIN_DIMENSIONS = 2  # one dimension has no shape left once the common offset is removed
# how each reported number reads
DIRECTIONS = {
    "distance": "z-space distance, offset removed: lower = closer",
    "raw_l1": f"{RAW_L1_LABEL}: lower = closer, dominated by the model's index offset",
    "rank": "rank of the target among all reference countries: 1 = closest",
    "top1": "1 if the target is the closest reference country, else 0: higher is better",
    "reciprocal_rank": "1 / rank: higher is better (mean over targets = MRR)",
    "margin": "mean distance to the other countries minus the distance to the target: higher is better, "
              "> 0 = closer to the target than to the average country",
    "kendall_tau": "Kendall tau-b across targets between the steered index and the human score: "
                   "higher is better, 0 = no relation",
    "similarity": "WVS 1 - JSD: higher = closer",
    "wvs_margin": "similarity to the target minus the mean similarity to the other countries: higher is better",
}


# --------------------------------------------------------------------------- references


@dataclass(frozen=True)
class Reference:
    """Human profiles to compare with: Hofstede code -> the dimensions the country has."""

    profiles: dict[str, dict[str, float]]
    names: dict[str, str]

    def with_target(self, target: Target) -> Reference:
        """The reference with ``target``'s scores in place of (or beside) the file's row: the
        documented way to compare with a full profile the file lacks (e.g. Saudi Arabia)."""
        return Reference({**self.profiles, target.code: dict(target.scores)},
                         {**self.names, target.code: target.name})

    def having(self, dims: Sequence[str]) -> list[str]:
        return [code for code, p in self.profiles.items() if all(d in p for d in dims)]


def hofstede_reference(data_dir: str | None = None) -> Reference:
    """Every row of Hofstede's 2015 file (countries and regions) with the dimensions it has."""
    rows = load_hofstede(data_dir)
    return Reference({t.code: dict(t.scores) for t in rows}, {t.code: t.name for t in rows})


def resolve(target: str | Target, reference: Reference, data_dir: str | None = None) -> tuple[str, Reference]:
    """The target's code and the reference to rank it in (a user-supplied profile replaces the row)."""
    if isinstance(target, Target):
        return target.code, reference.with_target(target)
    if target in reference.profiles:
        return target, reference
    code = find_target(target, data_dir).code
    if code not in reference.profiles:
        raise ValueError(f"target {target!r} ({code}) is not among the reference countries "
                         f"{sorted(reference.profiles)}")
    return code, reference


# --------------------------------------------------------------------------- VSM13 distances


def spread(reference: Reference, dims: Sequence[str], leave_out: str | None) -> dict[str, float]:
    """Per-dimension standard deviation (ddof=1) across the reference countries that have all of
    ``dims``, ``leave_out`` excluded so that a target never calibrates its own comparison."""
    codes = [c for c in reference.having(dims) if c != leave_out]
    if len(codes) < 2:
        raise ValueError(f"need at least two reference countries with dimensions {list(dims)} besides {leave_out}")
    out = {}
    for d in dims:
        sd = float(np.std([reference.profiles[c][d] for c in codes], ddof=1))
        if sd == 0:
            raise ValueError(f"dimension {d} does not vary across the reference countries")
        out[d] = sd
    return out


def z_distance(profile: Mapping[str, float], country: Mapping[str, float], sigma: Mapping[str, float],
               norm: int = 2) -> float:
    """Distance between two profiles in z-space after removing their common offset.

    z-scores (x - mu_d) / sigma_d differ by (x - y) / sigma_d: mu cancels. The offset removed is
    the sigma^-2-weighted mean difference (the least-squares common shift), so adding one constant
    to every index of either profile leaves the distance unchanged."""
    dims = list(sigma)
    return float(z_distances(np.array([float(profile[d]) for d in dims]),
                             np.array([[float(country[d]) for d in dims]]), np.array([sigma[d] for d in dims]), norm)[0])


def z_distances(profiles: np.ndarray, countries: np.ndarray, sigma: np.ndarray, norm: int = 2) -> np.ndarray:
    """``z_distance`` of profiles (..., D) to countries (K, D) at once, dimensions in ``sigma``'s order: (..., K)."""
    delta = np.asarray(profiles, dtype=float)[..., None, :] - countries
    w = 1.0 / sigma**2
    centred = (delta - (delta * w).sum(axis=-1, keepdims=True) / w.sum()) / sigma
    if norm == 1:
        return np.abs(centred).sum(axis=-1)
    if norm == 2:
        return np.sqrt((centred**2).sum(axis=-1))
    raise ValueError(f"norm must be 1 or 2, got {norm!r}")


def raw_l1(profile: Mapping[str, float], country: Mapping[str, float], dims: Sequence[str]) -> float:
    """The paper's loss: sum of |index - score| with every constant at 0 (scale-dependent)."""
    return float(sum(abs(float(profile[d]) - float(country[d])) for d in dims))


def pessimistic_rank(distances: Mapping[str, float], target: str, lower_is_closer: bool = True) -> float:
    """1 + the number of other countries at least as close as the target (a tie is no win); NaN
    when any distance is NaN (an undefined profile is not ranked first)."""
    if any(math.isnan(v) for v in distances.values()):
        return math.nan
    own = distances[target]
    sign = 1 if lower_is_closer else -1
    return 1 + sum(1 for c, v in distances.items() if c != target and sign * v <= sign * own + TIE_TOLERANCE)


def _top1(rank: float) -> float:
    return math.nan if math.isnan(rank) else float(rank == 1)


def target_dims(profile: Mapping[str, float], country: Mapping[str, float]) -> tuple[str, ...]:
    dims = tuple(d for d in DIMENSIONS if d in country and d in profile)
    if len(dims) < MIN_DIMENSIONS:
        raise ValueError(f"the target has only {list(dims)} of the six dimensions; a comparison needs at least "
                         f"{MIN_DIMENSIONS} (supply a full profile with its source, e.g. --target for Saudi Arabia)")
    return dims


def compare_vsm13(profile: Mapping[str, float], target: str | Target, reference: Reference, *,
                  norm: int = 2, data_dir: str | None = None) -> dict:
    """Distances of one VSM13 profile to every reference country with the target's dimensions,
    and the target's rank, top-1, reciprocal rank and margin among them."""
    code, ref = resolve(target, reference, data_dir)
    dims = target_dims(profile, ref.profiles[code])
    sigma = spread(ref, dims, leave_out=code)
    codes = ref.having(dims)
    distances = {c: z_distance(profile, ref.profiles[c], sigma, norm) for c in codes}
    rank = pessimistic_rank(distances, code)
    others = [v for c, v in distances.items() if c != code]
    return {
        "target": code,
        "name": ref.names.get(code, code),
        "dims": list(dims),
        "full_profile": len(dims) == len(DIMENSIONS),
        "countries": len(codes),
        "sigma": sigma,
        "distance": distances[code],
        "distances": distances,
        "raw_l1": {c: raw_l1(profile, ref.profiles[c], dims) for c in codes},
        "rank": rank,
        "top1": _top1(rank),
        "reciprocal_rank": 1.0 / rank,
        "margin": float(np.mean(others) - distances[code]),
    }


def margin_and_rank(indices: Mapping[str, float | np.ndarray], target: str | Target, reference: Reference, *,
                    data_dir: str | None = None) -> dict[str, np.ndarray]:
    """``compare_vsm13``'s margin, rank and distance to the target (norm 2) for many profiles at once: each index may be an
    array (one value per bootstrap resample); the results have its shape. The VSM13 tasks report
    these as ``vsm13_margin`` / ``vsm13_rank``, and the ``contrastive`` objective is minus the margin."""
    code, ref = resolve(target, reference, data_dir)
    dims = target_dims(dict.fromkeys(DIMENSIONS, 0.0), ref.profiles[code])
    sigma = spread(ref, dims, leave_out=code)
    codes = ref.having(dims)
    distances = z_distances(np.stack([np.asarray(indices[d], dtype=float) for d in dims], axis=-1),
                            np.array([[ref.profiles[c][d] for d in dims] for c in codes]),
                            np.array([sigma[d] for d in dims]))  # (..., K)
    t = codes.index(code)
    own, others = distances[..., t], np.delete(distances, t, axis=-1)
    rank = 1 + (others <= own[..., None] + TIE_TOLERANCE).sum(axis=-1)
    undefined = np.isnan(distances).any(axis=-1)
    if undefined.any():  # a NaN profile is not ranked first: its rank is NaN
        rank = np.where(undefined, math.nan, rank)[()]
    return {"margin": others.mean(axis=-1) - own, "rank": rank, "distance": own}


def _same_coverage(results: Sequence[Mapping]) -> None:
    covers = {tuple(r["dims"]) for r in results}
    if len(covers) > 1:
        raise ValueError(f"results cover different dimensions {sorted(covers)}; never average or rank them "
                         "together (group them with by_coverage)")


def mean_reciprocal_rank(results: Sequence[Mapping]) -> float:
    """MRR over targets that were compared on the same dimensions."""
    _same_coverage(results)
    return float(np.mean([r["reciprocal_rank"] for r in results]))


def by_coverage(results: Sequence[Mapping]) -> dict[str, list[Mapping]]:
    """Results grouped by their dimensions ("pdi,idv,mas,uai,lto,ivr" apart from "lto,ivr")."""
    groups: dict[str, list[Mapping]] = {}
    for r in results:
        groups.setdefault(",".join(r["dims"]), []).append(r)
    return groups


def tie_groups(values: Sequence[float], tolerance: float = INDEX_TIE) -> list[int]:
    """Each value's group in sorted order, a new group starting where the gap to the previous value
    exceeds ``tolerance``: two checkpoints that answer alike up to float noise are tied, not ordered
    by the noise (a chain of close values is one group)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    groups, group = [0] * len(values), 0
    for prev, i in zip(order, order[1:]):
        group += values[i] - values[prev] > tolerance
        groups[i] = group
    return groups


def kendall_tau(steered: Sequence[tuple[str, Mapping[str, float]]], reference: Reference) -> dict[str, float]:
    """Per dimension, Kendall tau-b across targets between the index of the model steered to each
    target and that target's human score (targets lacking the dimension are left out; NaN below
    two targets, without variation, or where a steered index is not finite). Steered indices within ``INDEX_TIE`` of each other are tied.
    ``steered`` is (target code, steered profile) pairs. Any constant added to a dimension leaves
    it unchanged."""
    from scipy.stats import kendalltau  # here, not at import: scipy.stats takes about a second to import

    out = {}
    for d in DIMENSIONS:
        pairs = [(float(p[d]), reference.profiles[c][d]) for c, p in steered
                 if d in reference.profiles[c] and d in p]
        if len(pairs) < 2 or not all(math.isfinite(a) for a, _ in pairs):  # a NaN index sorted into a tie group
            out[d] = math.nan
            continue
        x, y = zip(*pairs)
        x = tie_groups(x)
        out[d] = float(kendalltau(x, y).statistic) if len(set(x)) > 1 and len(set(y)) > 1 else math.nan
    values = [v for v in out.values() if not math.isnan(v)]
    out["mean"] = float(np.mean(values)) if values else math.nan
    return out


# --------------------------------------------------------------------------- VSM13 intervals


def term_values(item_means: Mapping[int, float]) -> dict[str, list[float]]:
    """Each index's weighted item-pair terms w (m_a - m_b); the index is their sum."""
    return {d: [w * (float(item_means[a]) - float(item_means[b])) for w, a, b in terms]
            for d, terms in FORMULAS.items()}


def term_replicates(item_means: Mapping[int, float], *, iters: int = 1000, seed: int = 1234) -> list[dict[str, float]]:
    """Bootstrap profiles over the survey's item pairs: within each dimension its terms are drawn
    with replacement and summed. The seed fixes which term is drawn, so profiles of different
    models under the same seed are paired replicates."""
    terms = term_values(item_means)
    rng = np.random.default_rng(seed)
    picks = {d: rng.integers(0, len(terms[d]), size=(iters, len(terms[d]))) for d in DIMENSIONS}
    return [{d: float(np.sum(np.asarray(terms[d])[picks[d][i]])) for d in DIMENSIONS} for i in range(iters)]


def replicate_indices(item_means: Mapping[int, float], constants: Mapping[str, float] | None = None, *,
                      iters: int = stats.ITERS, seed: int = stats.SEED) -> dict[str, np.ndarray]:
    """The six indices (``constants`` added) of each item-pair resample of ``term_replicates``: an array of
    ``iters`` values per dimension. Under one seed each resample draws the same item pairs whatever the
    means, so the replicates of two sets of item means (two prompts, two models) are paired."""
    constants = constants_by_dimension(constants)
    reps = term_replicates(item_means, iters=iters, seed=seed)
    return {d: np.array([r[d] for r in reps]) + constants.get(d, 0.0) for d in DIMENSIONS}


def loss_and_margin(indices: Mapping[str, float | np.ndarray], target: Target,
                    reference: Reference | None) -> dict[str, float | np.ndarray]:
    """The VSM13 task's ``vsm13_l1`` / ``vsm13_mae`` (over the dimensions the target has) and ``vsm13_margin`` /
    ``vsm13_rank`` (``margin_and_rank``: the target among ``reference``'s countries; NaN without a reference)
    of one profile, or of arrays of resamples (``replicate_indices``): the results have their shape."""
    loss = vsm13_loss(indices, target.scores)
    out = {"vsm13_l1": loss["l1"], "vsm13_mae": loss["mae"]}
    if reference is None:
        return {**out, "vsm13_margin": math.nan, "vsm13_rank": math.nan}
    found = margin_and_rank(indices, target, reference)
    return {**out, "vsm13_margin": found["margin"], "vsm13_rank": found["rank"]}


def replicate_interval(statistic: Callable[[dict], float], replicates: Sequence[dict],
                       level: float = 0.95) -> tuple[float, float]:
    return stats.percentile_interval([statistic(r) for r in replicates], level)


def compare_vsm13_ci(item_means: Mapping[int, float], target: str | Target, reference: Reference, *,
                     norm: int = 2, iters: int = 1000, seed: int = 1234, level: float = 0.95,
                     data_dir: str | None = None) -> tuple[dict, list[dict]]:
    """``compare_vsm13`` of the profile of these item means, with ``<metric>_ci`` intervals from
    the item-pair bootstrap; also returns the replicate results (paired across models by seed)."""
    profile = vsm13_indices(item_means)
    code, ref = resolve(target, reference, data_dir)  # a supplied Target's profile for the replicates too
    result = compare_vsm13(profile, code, ref, norm=norm)
    replicates = [compare_vsm13(r, code, ref, norm=norm)
                  for r in term_replicates(item_means, iters=iters, seed=seed)]
    for key in ("distance", "rank", "reciprocal_rank", "margin"):
        result[f"{key}_ci"] = list(stats.percentile_interval([r[key] for r in replicates], level))
    return result, replicates


# --------------------------------------------------------------------------- WVS


def wvs_reference(data_dir: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """slug -> question -> answer distribution, for every country in countries.yaml with WVS data."""
    from culture_tasks.data_root import data_file
    from culture_tasks.survey.countries import listed_countries
    from culture_tasks.survey.wvs import load_country, load_questions

    questions = load_questions(data_dir)
    return {c["slug"]: load_country(data_file(f"culturellm/{c['wvs_csv']}", data_dir), questions,
                                    c["name"]).distributions
            for c in listed_countries() if c.get("wvs_csv")}


def wvs_similarities(answers: Mapping[str, Sequence[float]], reference: Mapping[str, Mapping[str, np.ndarray]]
                     ) -> tuple[list[str], dict[str, np.ndarray]]:
    """Per-question 1 - JSD of the model's answers to each country, on the questions that the
    model and every reference country answered (one question set, so that countries compare)."""
    common = [q for q in answers if all(q in dist for dist in reference.values())]
    if not common:
        raise ValueError("no WVS question is answered by the model and every reference country")
    return common, {c: np.array([metrics.jsd_similarity(answers[q], dist[q]) for q in common])
                    for c, dist in reference.items()}


def wvs_scores(per_question: Mapping[str, np.ndarray], target: str, rows: Sequence[int] | None = None) -> dict:
    """Similarity to each country, the target's rank (1 = most similar) and margin."""
    sims = {c: float(np.mean(v if rows is None else v[list(rows)])) for c, v in per_question.items()}
    rank = pessimistic_rank(sims, target, lower_is_closer=False)
    others = [v for c, v in sims.items() if c != target]
    return {"similarity": sims[target], "similarities": sims, "rank": rank, "top1": _top1(rank),
            "reciprocal_rank": 1.0 / rank, "margin": float(sims[target] - np.mean(others))}


def compare_wvs(answers: Mapping[str, Sequence[float]], target: str, reference: Mapping[str, Mapping[str, np.ndarray]],
                *, iters: int = 1000, seed: int = 1234, level: float = 0.95) -> dict:
    """WVS comparison of one model with every WVS country, with intervals over questions."""
    from culture_tasks.stats import bootstrap_ci

    if target not in reference:
        raise ValueError(f"no WVS data for {target!r}; WVS countries: {sorted(reference)}")
    questions, per_question = wvs_similarities(answers, reference)
    out = {"target": target, "questions": len(questions), "countries": len(reference),
           **wvs_scores(per_question, target)}
    index = list(range(len(questions)))
    for key in ("similarity", "margin", "rank", "reciprocal_rank", "top1"):
        out[f"{key}_ci"] = list(bootstrap_ci(lambda rows, k=key: wvs_scores(per_question, target, rows)[k], index,
                                             iters=iters, seed=seed, level=level))
    return out
