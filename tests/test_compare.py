"""Country-specific comparison: hand-computed tiny cases, shift invariance, Hofstede's own profiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aligners.objectives import OBJECTIVES, make_objective
from culture_tasks.survey.compare import (
    RAW_L1_LABEL,
    Reference,
    by_coverage,
    compare_vsm13,
    compare_vsm13_ci,
    compare_wvs,
    hofstede_reference,
    kendall_tau,
    margin_and_rank,
    mean_reciprocal_rank,
    spread,
    term_replicates,
    term_values,
    tie_groups,
    wvs_scores,
    wvs_similarities,
)
from culture_tasks.survey.vsm13 import DIMENSIONS, FORMULAS, Target, vsm13_indices, vsm13_loss


def _p(*values):
    return dict(zip(DIMENSIONS, map(float, values)))


# B and C differ by 20 on every dimension, A and C by 10: leaving one out gives equal sigmas
TINY = Reference({"A": _p(10, 10, 10, 10, 10, 10), "B": _p(20, 0, 20, 0, 20, 0), "C": _p(0, 20, 0, 20, 0, 20)},
                 {"A": "Aland", "B": "Borduria", "C": "Carpania"})
MODEL = _p(12, 10, 12, 10, 12, 10)
R12 = math.sqrt(12)


def test_spread_leaves_the_target_out():
    assert spread(TINY, DIMENSIONS, "A") == pytest.approx(dict.fromkeys(DIMENSIONS, 20 / math.sqrt(2)))
    assert spread(TINY, DIMENSIONS, "B") == pytest.approx(dict.fromkeys(DIMENSIONS, 10 / math.sqrt(2)))


def test_hand_computed_distances_rank_margin(data_root):
    # target A: sigma 20/sqrt2; deltas (2,0,..), (-8,10,..), (12,-10,..) lose their mean 1 -> +-1, +-9, +-11
    a = compare_vsm13(MODEL, "A", TINY)
    assert a["distances"] == pytest.approx({"A": R12 / 20, "B": 9 * R12 / 20, "C": 11 * R12 / 20})
    assert (a["rank"], a["top1"], a["reciprocal_rank"]) == (1, 1.0, 1.0)
    assert a["margin"] == pytest.approx(10 * R12 / 20 - R12 / 20)
    assert a["raw_l1"] == {"A": 6.0, "B": 54.0, "C": 66.0}
    assert a["dims"] == list(DIMENSIONS) and a["full_profile"] and a["countries"] == 3
    # target B: sigma 10/sqrt2; A is closer than B, so B ranks second
    b = compare_vsm13(MODEL, "B", TINY)
    assert b["distances"] == pytest.approx({"A": R12 / 10, "B": 9 * R12 / 10, "C": 11 * R12 / 10})
    assert (b["rank"], b["top1"], b["reciprocal_rank"]) == (2, 0.0, 0.5)
    assert b["margin"] == pytest.approx(6 * R12 / 10 - 9 * R12 / 10)
    assert mean_reciprocal_rank([a, b]) == pytest.approx(0.75)
    assert compare_vsm13(MODEL, "U.S.A.", hofstede_reference(str(data_root)))["target"] == "USA"  # names resolve
    with pytest.raises(ValueError, match="not among the reference countries"):
        compare_vsm13(MODEL, "USA", TINY)


def test_l1_norm_and_ties_count_against_the_target():
    a = compare_vsm13(MODEL, "A", TINY, norm=1)
    assert a["distances"] == pytest.approx({"A": 6 / (20 / math.sqrt(2)), "B": 54 / (20 / math.sqrt(2)),
                                            "C": 66 / (20 / math.sqrt(2))})
    twin = Reference({**TINY.profiles, "D": TINY.profiles["A"]}, {**TINY.names, "D": "Dup"})
    assert compare_vsm13(TINY.profiles["A"], "A", twin)["rank"] == 2  # a tie is no win


def test_kendall_tau_per_dimension_across_targets():
    steered = [("A", _p(5, 3, 2, 0, 0, 0)), ("B", _p(7, 4, 1, 0, 0, 0)), ("C", _p(1, 1, 0, 0, 0, 0))]
    tau = kendall_tau(steered, TINY)
    assert tau["pdi"] == pytest.approx(1.0)  # C < A < B in both
    assert tau["idv"] == pytest.approx(-1.0)  # every pair discordant
    assert tau["mas"] == pytest.approx(1 / 3)  # (A,B) discordant, two concordant
    assert all(math.isnan(tau[d]) for d in ("uai", "lto", "ivr"))  # no variation in the steered index
    assert tau["mean"] == pytest.approx(1 / 9)
    shifted = [(c, {d: v + 40 * i for i, (d, v) in enumerate(p.items())}) for c, p in steered]
    assert kendall_tau(shifted, TINY) == pytest.approx(tau, nan_ok=True)


def test_kendall_tau_ties_steered_indices_that_differ_by_float_noise_only():
    # one prompt fitted for every target answers alike up to ~1e-4: no order, so no tau (not a noise tau)
    noise = [("A", _p(5, 5, 5, 5, 5, 5)), ("B", _p(5.00004, 5, 5, 5, 5, 5)), ("C", _p(4.99997, 5, 5, 5, 5, 5))]
    assert math.isnan(kendall_tau(noise, TINY)["pdi"])
    # pdi: steered A 1, B 1.0004 (tied), C 3; human A 10, B 20, C 0. (A,B) tied in x; (A,C) and (B,C): x up,
    # y down, discordant. tau-b = (C - D) / sqrt((pairs - x ties)(pairs - y ties)) = (0 - 2) / sqrt(2 * 3)
    tied = [("A", _p(1, 0, 0, 0, 0, 0)), ("B", _p(1.0004, 0, 0, 0, 0, 0)), ("C", _p(3, 0, 0, 0, 0, 0))]
    assert kendall_tau(tied, TINY)["pdi"] == pytest.approx(-2 / math.sqrt(6))
    assert tie_groups([1.0, 1.0004, 3.0, 1.0008, 0.5, 1.002]) == [1, 1, 3, 1, 0, 2]  # a chain of close values is one group


def test_kendall_tau_of_a_dimension_with_a_nan_steered_index_is_nan():
    # the NaN was sorted into a tie group: steered pdi [nan, 20, 30] gave 0.816, [10, nan, 30] gave NaN
    for pdi in ((math.nan, 20, 30), (10, math.nan, 30)):
        steered = [(c, _p(v, i, 0, 0, 0, 0)) for c, v, i in zip("ABC", pdi, (5, 7, 1))]
        tau = kendall_tau(steered, TINY)
        assert math.isnan(tau["pdi"]) and tau["idv"] == pytest.approx(-1.0) and tau["mean"] == pytest.approx(-1.0)


def test_adding_a_constant_to_every_index_changes_no_rank_metric(data_root):
    ref = hofstede_reference(str(data_root))
    rng = np.random.default_rng(0)
    for target in ("USA", "CHI", "IND", "GER", "SAU"):
        profile = dict(zip(DIMENSIONS, rng.normal(0, 30, 6)))
        base = compare_vsm13(profile, target, ref)
        for c in (-250.0, 17.5, 1000.0):
            moved = compare_vsm13({d: v + c for d, v in profile.items()}, target, ref)
            for key in ("rank", "top1", "reciprocal_rank"):
                assert moved[key] == base[key]
            assert moved["margin"] == pytest.approx(base["margin"])
            assert moved["distances"] == pytest.approx(base["distances"])
            # the raw L1 is the one that moves, and is labelled so
            assert moved["raw_l1"][base["target"]] != pytest.approx(base["raw_l1"][base["target"]])
    assert RAW_L1_LABEL == "raw L1 (C=0)"


@pytest.mark.parametrize("country", ["USA", "CHI", "GER", "IND", "JPN", "BRA", "KOR", "TUR"])
def test_hofstede_own_profile_ranks_its_country_first(data_root, country):
    ref = hofstede_reference(str(data_root))
    result = compare_vsm13(ref.profiles[country], country, ref)
    assert result["rank"] == 1 and result["distance"] == pytest.approx(0.0, abs=1e-9)
    assert result["countries"] == len(ref.having(DIMENSIONS)) and result["margin"] > 0


def test_every_country_with_four_or_more_dimensions_ranks_first(data_root):
    ref = hofstede_reference(str(data_root))
    wide = [c for c, p in ref.profiles.items() if len(p) >= 4]
    assert len(wide) == 65 + 12 + 1  # six, four (no LTO/IVR), five dimensions
    assert [c for c in wide if compare_vsm13(ref.profiles[c], c, ref)["rank"] != 1] == []


def test_coverage_is_explicit_and_never_mixed(data_root):
    ref = hofstede_reference(str(data_root))
    profile = dict.fromkeys(DIMENSIONS, 0.0)
    sau, usa = compare_vsm13(profile, "SAU", ref), compare_vsm13(profile, "USA", ref)
    assert sau["dims"] == ["lto", "ivr"] and not sau["full_profile"]
    assert sau["countries"] == len(ref.having(["lto", "ivr"])) > usa["countries"]
    with pytest.raises(ValueError, match="different dimensions"):
        mean_reciprocal_rank([sau, usa])
    assert set(by_coverage([sau, usa])) == {"lto,ivr", ",".join(DIMENSIONS)}
    # a full profile supplied by the user replaces the file's two-dimension row
    full = compare_vsm13(profile, Target("Saudi Arabia", "SAU", _p(95, 25, 60, 80, 36, 52)), ref)
    assert full["full_profile"] and full["countries"] == usa["countries"] + 1
    with pytest.raises(ValueError, match="only \\['ivr'\\]"):
        compare_vsm13(profile, next(c for c, p in ref.profiles.items() if list(p) == ["ivr"]), ref)


def test_term_replicates_resample_item_pairs_within_each_dimension():
    means = {k: 1.0 + (k % 5) for k in range(1, 25)}
    terms = term_values(means)
    assert {d: sum(t) for d, t in terms.items()} == pytest.approx(vsm13_indices(means))
    assert terms["pdi"] == [35 * (means[7] - means[2]), 25 * (means[20] - means[23])]
    reps = term_replicates(means, iters=400, seed=5)
    for d in DIMENSIONS:
        t1, t2 = terms[d]
        allowed = [2 * t1, t1 + t2, 2 * t2]
        assert all(min(abs(r[d] - a) for a in allowed) < 1e-9 for r in reps)
        share = np.mean([abs(r[d] - 2 * t1) < 1e-9 for r in reps]) if t1 != t2 else 0.25
        assert 0.15 < share < 0.35  # both draws pick the first term: 1/4
    assert term_replicates(means, iters=400, seed=5) == reps
    # paired: a second model under the same seed draws the same terms
    other = {k: 6.0 - v for k, v in means.items()}
    flipped = term_replicates(other, iters=400, seed=5)
    assert all(r2[d] == pytest.approx(-r1[d]) for r1, r2 in zip(reps, flipped) for d in DIMENSIONS)
    assert len(FORMULAS["pdi"]) == 2


def test_compare_with_intervals_is_compare_on_the_replicates(data_root):
    ref = hofstede_reference(str(data_root))
    means = {k: 1.0 + ((7 * k) % 5) * 0.9 for k in range(1, 25)}
    result, reps = compare_vsm13_ci(means, "CHN", ref, iters=50, seed=3)
    assert result["target"] == "CHI"
    assert result["distance"] == pytest.approx(compare_vsm13(vsm13_indices(means), "CHI", ref)["distance"])
    expected = [compare_vsm13(r, "CHI", ref) for r in term_replicates(means, iters=50, seed=3)]
    assert [r["margin"] for r in reps] == pytest.approx([r["margin"] for r in expected])
    margins = sorted(r["margin"] for r in expected)
    assert result["margin_ci"] == pytest.approx([float(np.quantile(margins, q)) for q in (0.025, 0.975)])


def _two(a, b):
    return np.array([a, b], dtype=float)


WVS_REF = {"x": {"1": _two(1, 0), "2": _two(1, 0), "3": _two(1, 0)},
           "y": {"1": _two(0, 1), "2": _two(0, 1)},
           "z": {"1": _two(1, 0), "2": _two(0, 1), "3": _two(0, 1)}}


def test_wvs_similarity_rank_margin_by_hand():
    answers = {"1": [1.0, 0.0], "2": [1.0, 0.0], "3": [0.5, 0.5]}
    questions, per_q = wvs_similarities(answers, WVS_REF)
    assert questions == ["1", "2"]  # y lacks question 3: only common questions compare
    x = wvs_scores(per_q, "x")
    assert x["similarities"] == pytest.approx({"x": 1.0, "y": 0.0, "z": 0.5})
    assert (x["rank"], x["reciprocal_rank"], x["margin"]) == (1, 1.0, pytest.approx(0.75))
    z = wvs_scores(per_q, "z")
    assert (z["rank"], z["reciprocal_rank"], z["margin"]) == (2, 0.5, pytest.approx(0.0))
    full = compare_wvs(answers, "z", WVS_REF, iters=200, seed=1)
    assert full["questions"] == 2 and full["rank"] == 2
    low, high = full["margin_ci"]
    assert low <= full["margin"] <= high and low < high  # resampling questions moves z's margin
    with pytest.raises(ValueError, match="no WVS data"):
        compare_wvs(answers, "q", WVS_REF)


def test_objectives_registry(data_root):
    ref = hofstede_reference(str(data_root))
    assert set(OBJECTIVES) == {"l1", "standardised", "standardised_l1", "contrastive"}
    profile = dict(zip(DIMENSIONS, [3.0, -20.0, 11.0, 40.0, -5.0, 8.0]))
    shifted = {d: v + 123.0 for d, v in profile.items()}
    usa = ref.profiles["USA"]
    assert make_objective("l1", "USA", ref)(profile) == pytest.approx(vsm13_loss(profile, usa)["l1"])
    result = compare_vsm13(profile, "USA", ref)
    assert make_objective("standardised", "USA", ref)(profile) == pytest.approx(result["distance"])
    assert make_objective("contrastive", "USA", ref)(profile) == pytest.approx(-result["margin"])
    for name in ("standardised", "standardised_l1", "contrastive"):
        f = make_objective(name, "USA", ref)
        assert f(shifted) == pytest.approx(f(profile))
    assert make_objective("l1", "USA", ref)(shifted) != pytest.approx(make_objective("l1", "USA", ref)(profile))
    # hand case: contrastive = d(A) - mean(d(B), d(C)) = (1 - 10) sqrt12 / 20
    assert make_objective("contrastive", "A", TINY)(MODEL) == pytest.approx(-9 * R12 / 20)
    with pytest.raises(ValueError, match="unknown objective 'l3'; choose one of"):
        make_objective("l3", "USA", ref)


def test_standardised_objectives_are_the_z_space_norms_by_hand():
    # target A, sigma 20 / sqrt2 on every dimension: MODEL's differences to A (2, 0, 2, 0, 2, 0) lose their mean 1 and
    # leave +-1 on each of the six dimensions: L2 sqrt(6) / sigma = sqrt(12) / 20, L1 6 / sigma = 6 sqrt2 / 20
    sigma = 20 / math.sqrt(2)
    assert make_objective("standardised", "A", TINY)(MODEL) == pytest.approx(R12 / 20)
    assert make_objective("standardised_l1", "A", TINY)(MODEL) == pytest.approx(6 / sigma)


def test_intervals_of_a_supplied_full_profile_use_that_profile():
    # the file's row of S has only LTO and IVR; the user supplies all six: the point estimate and
    # every replicate behind its interval compare on the same six dimensions and countries
    ref = Reference({**TINY.profiles, "D": _p(5, 15, 25, 5, 15, 25), "S": {"lto": 30.0, "ivr": 40.0}},
                    {**TINY.names, "D": "Dystopia", "S": "Syldavia"})
    supplied = Target("Syldavia", "S", _p(12, 10, 12, 10, 12, 10))
    means = {k: 1.0 + ((7 * k) % 5) * 0.9 for k in range(1, 25)}
    result, reps = compare_vsm13_ci(means, supplied, ref, iters=40, seed=3)
    assert result["dims"] == list(DIMENSIONS) and result["countries"] == 5
    assert {tuple(r["dims"]) for r in reps} == {tuple(DIMENSIONS)}
    expected = [compare_vsm13(r, supplied, ref) for r in term_replicates(means, iters=40, seed=3)]
    assert [r["margin"] for r in reps] == pytest.approx([r["margin"] for r in expected])
    assert result["margin_ci"] == pytest.approx([float(np.quantile([r["margin"] for r in expected], q))
                                                 for q in (0.025, 0.975)])


def test_an_undefined_profile_is_not_ranked_first():
    # a NaN index (e.g. a partial run's indices) makes every distance NaN: rank, top-1 and
    # reciprocal rank are undefined, not 1 / 1.0 / 1.0 (the best possible)
    broken = {**MODEL, "pdi": math.nan}
    a = compare_vsm13(broken, "A", TINY)
    assert math.isnan(a["rank"]) and math.isnan(a["top1"]) and math.isnan(a["reciprocal_rank"])
    assert math.isnan(a["margin"])
    both = margin_and_rank({d: np.array([MODEL[d], broken[d]]) for d in DIMENSIONS}, "A", TINY)
    assert both["rank"][0] == 1 and math.isnan(both["rank"][1])
    assert margin_and_rank(MODEL, "A", TINY)["rank"] == 1
    whole = compare_vsm13(MODEL, "A", TINY)  # the vectorised form: the same distance, margin and rank
    assert margin_and_rank(MODEL, "A", TINY)["distance"] == pytest.approx(whole["distance"], abs=1e-12)
    assert margin_and_rank(MODEL, "A", TINY)["margin"] == pytest.approx(whole["margin"], abs=1e-12)
    assert math.isnan(margin_and_rank(broken, "A", TINY)["rank"])
    sims = wvs_scores({"x": np.array([1.0, math.nan]), "y": np.array([0.0, 0.0])}, "x")
    assert math.isnan(sims["rank"]) and math.isnan(sims["top1"])



@pytest.mark.parametrize("name", ["U.S.A.", "usa", "USA", "United States", "the United States"])
def test_an_explicit_profile_of_a_file_country_replaces_its_row_whatever_the_spelling(data_root, name):
    # Hofstede's own USA profile passed as explicit scores under the file's name ("U.S.A."): the
    # file's USA row must neither compete with it (a tie: rank 2 of 66) nor calibrate its spread
    from culture_tasks.survey.vsm13 import resolve_target

    ref = hofstede_reference(str(data_root))
    usa = ref.profiles["USA"]
    by_code = compare_vsm13(usa, "USA", ref)
    target = resolve_target(name, [usa[d] for d in DIMENSIONS], str(data_root))
    assert target.code == "USA"
    result = compare_vsm13(usa, target, ref)
    assert (result["rank"], result["countries"]) == (1, 65)
    assert result["sigma"] == pytest.approx(by_code["sigma"]) and result["margin"] == pytest.approx(by_code["margin"])
    # Saudi Arabia's two scores under its name: they replace the file's row, no twin to tie with
    assert resolve_target("Saudi Arabia", {"lto": 36, "ivr": 52}, str(data_root)).code == "SAU"
    # a name the file does not know is a profile of its own, beside every row
    assert resolve_target("Wakanda", [usa[d] for d in DIMENSIONS], str(data_root)).code == "Wakanda"


# two dimensions whose spreads differ: pdi 0, 1, 2 (sd 1) and idv 0, 2, 4 (sd 2) across A, B, C; T is the target
UNEQUAL = Reference({"T": {"pdi": 10.0, "idv": 0.0}, "A": {"pdi": 0.0, "idv": 0.0}, "B": {"pdi": 1.0, "idv": 2.0},
                     "C": {"pdi": 2.0, "idv": 4.0}}, {})


def test_the_common_offset_is_the_sigma_weighted_least_squares_shift():
    # in two dimensions with sigma (1, 2), the shift c minimising ((d1 - c) / 1)^2 + ((d2 - c) / 2)^2 is the
    # sigma^-2-weighted mean (4 d1 + d2) / 5, which leaves ((d1 - d2) / 5, 2 (d2 - d1) / 5): distance
    # |d1 - d2| / sqrt(1 + 4) = |d1 - d2| / sqrt5 (an unweighted mean shift would leave |d1 - d2| sqrt5 / 4).
    # The model (0, 0): d = (-10, 0) to T, (0, 0) to A, (-1, -2) to B, (-2, -4) to C
    out = compare_vsm13({"pdi": 0.0, "idv": 0.0}, "T", UNEQUAL)
    assert out["sigma"] == pytest.approx({"pdi": 1.0, "idv": 2.0})
    r5 = math.sqrt(5)
    assert out["distances"] == pytest.approx({"T": 10 / r5, "A": 0.0, "B": 1 / r5, "C": 2 / r5})
    assert out["rank"] == 4 and out["margin"] == pytest.approx((0 + 1 + 2) / 3 / r5 - 10 / r5)
    both = margin_and_rank({"pdi": 0.0, "idv": 0.0}, "T", UNEQUAL)
    assert (both["distance"], both["margin"], both["rank"]) == (pytest.approx(10 / r5), pytest.approx(-9 / r5), 4)


def test_a_country_within_float_noise_of_the_target_is_a_tie_in_both_ranks():
    # the model answers A's profile exactly (distance 0); D is A with 1e-12 added to one index: its distance,
    # about 1e-13, is float noise (below TIE_TOLERANCE, 1e-9), so D ties with A and a tie is no win: rank 2.
    # An exact twin of A is the same tie, in compare_vsm13 and in the vectorised margin_and_rank alike.
    near = Reference({**TINY.profiles, "D": {**TINY.profiles["A"], "pdi": 10.0 + 1e-12}}, {})
    twin = Reference({**TINY.profiles, "D": dict(TINY.profiles["A"])}, {})
    for ref in (near, twin):
        assert compare_vsm13(TINY.profiles["A"], "A", ref)["rank"] == 2
        assert margin_and_rank(TINY.profiles["A"], "A", ref)["rank"] == 2
    far = Reference({**TINY.profiles, "D": {**TINY.profiles["A"], "pdi": 10.1}}, {})  # a real difference: rank 1
    assert compare_vsm13(TINY.profiles["A"], "A", far)["rank"] == 1
    assert margin_and_rank(TINY.profiles["A"], "A", far)["rank"] == 1


def test_kendall_tau_of_two_targets_and_mrr_of_three():
    # two targets are enough for tau: pdi steered 1 < 2 and human A 10 < B 20, concordant: 1; idv steered 1 < 3,
    # human 10 > 0: -1; the others do not vary (NaN); mean 0
    tau = kendall_tau([("A", _p(1, 1, 0, 0, 0, 0)), ("B", _p(2, 3, 0, 0, 0, 0))], TINY)
    assert (tau["pdi"], tau["idv"], tau["mean"]) == (pytest.approx(1.0), pytest.approx(-1.0), pytest.approx(0.0))
    # MRR is the mean of 1, 1/2 and 1/4: 7/12 (the median would be 1/2)
    dims = list(DIMENSIONS)
    results = [{"dims": dims, "reciprocal_rank": r} for r in (1.0, 0.5, 0.25)]
    assert mean_reciprocal_rank(results) == pytest.approx(7 / 12)
