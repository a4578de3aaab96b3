"""Bootstrap intervals and the paired comparison against hand-computed and independent values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from culture_tasks import stats
from culture_tasks.classification import f1_macro


def test_constant_items_give_a_point_interval():
    assert stats.bootstrap_ci(stats.mean, [0.7] * 9) == (pytest.approx(0.7), pytest.approx(0.7))


def test_two_value_case_matches_an_independent_numpy_computation():
    items = [1.0, 0.0, 0.0, 1.0, 1.0]  # three ones, two zeros
    low, high = stats.bootstrap_ci(stats.mean, items, iters=200, seed=7, level=0.9)
    # independently: the sorted items are [0, 0, 1, 1, 1]; draw the same indices, take means
    idx = np.random.default_rng(7).integers(0, 5, size=(200, 5))
    means = np.array([0.0, 0.0, 1.0, 1.0, 1.0])[idx].mean(axis=1)
    assert (low, high) == (pytest.approx(np.percentile(means, 5)), pytest.approx(np.percentile(means, 95)))
    # every resample mean is a multiple of 1/5, so the bounds are too (interpolation aside)
    assert 0.0 <= low <= 0.6 <= high <= 1.0 and low < high


def test_interval_does_not_depend_on_item_order():
    items = [0.1, 0.9, 0.4, 0.4, 0.8, 0.3]
    assert stats.bootstrap_ci(stats.mean, items) == stats.bootstrap_ci(stats.mean, items[::-1])


def test_loop_and_vectorised_aggregates_agree():
    rng = np.random.default_rng(0)
    items = [(int(g), int(p), 3) for g, p in zip(rng.integers(0, 3, 40), rng.integers(-1, 3, 40))]

    def plain(xs):  # no .batched: bootstrap_ci calls it once per resample
        return f1_macro(xs)

    assert stats.bootstrap_ci(plain, items, iters=50) == pytest.approx(stats.bootstrap_ci(f1_macro, items, iters=50))
    values = list(rng.random(30))
    assert stats.bootstrap_ci(lambda xs: float(np.mean(xs)), values, iters=50) == pytest.approx(
        stats.bootstrap_ci(stats.mean, values, iters=50))


def test_nan_only_when_the_metric_is():
    assert all(np.isnan(stats.bootstrap_ci(stats.mean, [])))
    # a statistic that is NaN for some resamples keeps a numeric interval from the others
    low, high = stats.bootstrap_ci(lambda xs: float("nan") if xs.count(1.0) == 0 else 1.0, [1.0, 0.0, 0.0])
    assert (low, high) == (1.0, 1.0)


def test_paired_identical_inputs_give_no_difference():
    items = [0.2, 0.5, 0.9, 0.1, 0.4]
    out = stats.paired_bootstrap(stats.mean, items, list(items))
    assert out == {"diff": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}


def test_paired_clear_difference_is_significant():
    rng = np.random.default_rng(3)
    a = list(rng.random(40))
    b = [x + 0.3 for x in a]
    out = stats.paired_bootstrap(stats.mean, a, b)
    assert out["diff"] == pytest.approx(0.3)
    assert out["low"] == pytest.approx(0.3) and out["high"] == pytest.approx(0.3)  # a constant shift
    # a random swap reaches |0.3| only if it swaps all 40 pairs or none (2 / 2^40): p = 1 / (1 + 1000)
    assert out["p_value"] == pytest.approx(1 / 1001)
    noisy = [x + 0.3 + e for x, e in zip(a, rng.normal(0, 0.2, 40))]
    out = stats.paired_bootstrap(stats.mean, a, noisy)
    assert out["p_value"] < 0.05 and out["low"] > 0


def test_paired_no_real_difference_is_not_significant():
    rng = np.random.default_rng(4)
    a = list(rng.random(40))
    b = [x + e for x, e in zip(a, rng.normal(0, 0.2, 40))]
    b = [x - (np.mean(b) - np.mean(a)) for x in b]  # the same mean, different documents' values
    out = stats.paired_bootstrap(stats.mean, a, b)
    assert out["diff"] == pytest.approx(0.0, abs=1e-12)
    assert out["p_value"] > 0.5 and out["low"] < 0 < out["high"]


def test_randomisation_p_with_few_documents_by_hand():
    # two documents, both 0 -> 1: a swap round reaches |1| only when it swaps both or neither (probability 1/2)
    out = stats.paired_bootstrap(stats.mean, [0.0, 0.0], [1.0, 1.0])
    swap = np.random.default_rng((stats.SEED, 1)).integers(0, 2, size=(stats.ITERS, 2))
    assert out["p_value"] == pytest.approx((1 + np.sum(swap[:, 0] == swap[:, 1])) / (1 + stats.ITERS))
    assert out["p_value"] == pytest.approx(0.5, abs=0.05)
    assert out["diff"] == 1.0 and out["low"] == out["high"] == 1.0  # the bootstrap alone would say certain
    # five documents that all moved the same way: the exact sign test's 2 / 2^5
    five = stats.paired_bootstrap(stats.mean, [0.0] * 5, [1.0] * 5)
    swap5 = np.random.default_rng((stats.SEED, 1)).integers(0, 2, size=(stats.ITERS, 5))
    assert five["p_value"] == pytest.approx((1 + np.sum((swap5 == swap5[:, :1]).all(axis=1))) / (1 + stats.ITERS))
    assert five["p_value"] == pytest.approx(2 / 32, abs=0.02)
    # one document: no interval, and no evidence
    one = stats.paired_bootstrap(stats.mean, [0.0], [1.0])
    assert np.isnan(one["low"]) and np.isnan(one["high"]) and one["p_value"] == 1.0
    assert all(np.isnan(stats.bootstrap_ci(stats.mean, [1.0])))


def test_randomisation_vectorised_and_loop_aggregates_agree():
    from culture_tasks.classification import f1_macro_weighted

    rng = np.random.default_rng(5)
    a = [(int(g), int(p), 3) for g, p in zip(rng.integers(0, 3, 50), rng.integers(-1, 3, 50))]
    b = [(g, g if rng.random() < 0.5 else p, k) for g, p, k in a]  # the checkpoint fixes about half the misses

    def plain(xs):  # no .batched: one call per round
        return f1_macro(xs)

    fast, slow = stats.paired_bootstrap(f1_macro, a, b, iters=200), stats.paired_bootstrap(plain, a, b, iters=200)
    assert fast == pytest.approx(slow) and fast["p_value"] < 0.05 < fast["diff"]
    tasks_a = [("t1", x) for x in a[:20]] + [("t2", x) for x in a[20:]]  # MIN_DOCS each
    tasks_b = [("t1", x) for x in b[:20]] + [("t2", x) for x in b[20:]]
    weighted = stats.paired_bootstrap(stats.TaskMean(f1_macro, f1_macro_weighted), tasks_a, tasks_b, iters=200)
    assert weighted == pytest.approx(stats.paired_bootstrap(stats.TaskMean(f1_macro), tasks_a, tasks_b, iters=200))


def test_paired_inputs_must_align():
    with pytest.raises(ValueError, match="differ in length"):
        stats.paired_bootstrap(stats.mean, [1.0], [1.0, 2.0])


def test_companion_aggregations_and_results():
    aggs = stats.ci_aggregations("acc", stats.mean)
    assert set(aggs) == {"acc_ci_low", "acc_ci_high"}
    items = [1.0, 0.0, 1.0, 1.0]
    assert (aggs["acc_ci_low"](items), aggs["acc_ci_high"](items)) == stats.bootstrap_ci(stats.mean, items)
    assert stats.with_ci({"acc": 1.0}) == {"acc": 1.0, "acc_ci_low": 1.0, "acc_ci_high": 1.0}


def test_metric_list_block_replaces_only_that_block():
    template = "a: 1\nmetric_list:\n  - {metric: old}\nmetadata:\n  version: 1.0\n"
    block = stats.metric_list_yaml("m.mod", [("f1", "f1", True), ("acc", "mean", False)], intervals=["f1"])
    out = stats.with_metric_list(template, block)
    assert out == (
        "a: 1\nmetric_list:\n"
        "  - {metric: f1, aggregation: !function m.mod.f1, higher_is_better: true}\n"
        "  - {metric: f1_ci_low, aggregation: !function m.mod.f1_ci_low, higher_is_better: true}\n"
        "  - {metric: f1_ci_high, aggregation: !function m.mod.f1_ci_high, higher_is_better: true}\n"
        "  - {metric: acc, aggregation: mean, higher_is_better: false}\n"
        "metadata:\n  version: 1.0\n"
    )


def test_culture_means_follow_lm_evals_group_structure():
    from culture_tasks.paths import task_groups
    from culture_tasks.stats import culture_means, culture_scores, culture_tasks

    result = {"group_subtasks": {"culturellm": ["culturellm_english", "culturellm_korean"],
                                 "culturellm_english": ["culturellm_english_a", "culturellm_english_b"],
                                 "culturellm_korean": ["culturellm_korean_a"]}}
    metrics = {"culturellm_english_a": {"f1_macro": 0.5}, "culturellm_english_b": {"f1_macro": 0.25},
               "culturellm_korean_a": {"acc": 1.0},  # no macro-F1: the culture has no score
               "culturellm_english": {"f1_macro": 0.9}}  # a group's own value is not a task's
    groups = task_groups(result)
    assert culture_scores(metrics, groups, "culturellm") == {"english": [0.5, 0.25]}
    assert culture_means(metrics, groups) == {"english": 0.375}
    # a result file without group_subtasks: the group YAMLs of the tasks folder
    folder = task_groups({})
    assert folder["culturellm"][0] == "culturellm_arabic" and len(folder["culturellm"]) == 9
    assert folder["culturellm_english"] == ["culturellm_english_mlma_hate", "culturellm_english_hate_offensive",
                                            "culturellm_english_mlma_directness", "culturellm_english_solid_easy",
                                            "culturellm_english_jigsaw_threat", "culturellm_english_jigsaw_toxic"]
    assert "culturellm_english" not in folder["culturellm_gen"]
    # a task no culture group lists counts under the culture its name extends; other suites' tasks do not
    loose = {"culturellm_korean_z": {"f1_macro": 0.5}, "culturellm_gen_korean_z": {"f1_macro": 0.1}}
    assert culture_tasks(loose, folder, "culturellm") == {"korean": ["culturellm_korean_z"]}
    assert culture_tasks(loose, folder, "culturellm_gen") == {"korean": ["culturellm_gen_korean_z"]}


def _samples(items, hashed=True):
    """As read back from JSON, with lm-eval's doc_hash (``hashed``) that says which document a doc_id is."""
    return [{"doc_id": i, "f1_macro": list(item), **({"doc_hash": f"h{i}"} if hashed else {})}
            for i, item in enumerate(items)]


def test_paired_task_mean_macro_f1_by_hand():
    # t1, two labels: base right on docs 0 and 2 -> F1 class 0 = 2*1/(1+2), class 1 = 2*1/(2+1), macro 2/3;
    # the adapter is right everywhere -> 1. t2: both wrong on both docs -> 0 and 0.
    base_t1, adapter_t1 = [(0, 0, 2), (1, 0, 2), (1, 1, 2)], [(0, 0, 2), (1, 1, 2), (1, 1, 2)]
    wrong = [(0, 1, 2), (1, 0, 2)]
    base = {"t1": _samples(base_t1), "t2": _samples(wrong)}
    adapter = {"t1": _samples(adapter_t1), "t2": _samples(wrong)}

    def f1(xs):  # macro-F1 without its minimum of documents for an interval (classification.MIN_DOCS)
        return f1_macro(xs)

    iters = 100  # sklearn's f1 once per resample: what is asserted holds at any number of resamples

    # with it, 2 and 3 documents give no interval; the difference and the randomisation test stay
    guarded = stats.paired_task_mean(f1_macro, base, adapter, iters=iters)
    assert math.isnan(guarded["low"]) and math.isnan(guarded["high"])
    assert (guarded["diff"], guarded["p_value"]) == pytest.approx(((1 - 2 / 3 + 0) / 2, 1.0))
    out = stats.paired_task_mean(f1, base, adapter, iters=iters)
    assert out["diff"] == pytest.approx((1 - 2 / 3 + 0) / 2)  # the mean over tasks of the per-task differences
    assert (out["tasks"], out["documents"]) == (2, 5)
    # no resample favours the base (the adapter is right wherever the base is), so the interval starts at 0 or
    # above
    assert 0.0 <= out["low"] <= out["diff"] <= out["high"] <= 0.5
    # the runs differ on one document only (t1's doc 1): swapping it turns the difference into -1/6, so every
    # random swap reaches |1/6| and one document is no evidence at all: p = 1 (a bootstrap p-value said 8/27)
    assert out["p_value"] == 1.0
    # one task: exactly the paired bootstrap of macro-F1 over its documents
    one = stats.paired_task_mean(f1, {"t1": base["t1"]}, {"t1": adapter["t1"]}, iters=iters)
    expected = stats.paired_bootstrap(f1, base_t1, adapter_t1, iters=iters)
    assert {k: one[k] for k in expected} == pytest.approx(expected)
    same = stats.paired_task_mean(f1, base, base, iters=iters)
    assert (same["diff"], same["low"], same["high"], same["p_value"]) == (0.0, 0.0, 0.0, 1.0)


def test_paired_task_mean_refuses_unpaired_runs():
    base = {"t1": _samples([(0, 0, 2), (1, 1, 2)])}
    with pytest.raises(ValueError, match="different tasks: only in the first"):
        stats.paired_task_mean(f1_macro, {**base, "t2": base["t1"]}, base)
    with pytest.raises(ValueError, match="t1: the runs scored different documents"):
        stats.paired_task_mean(f1_macro, base, {"t1": base["t1"][:1]})
    # the same doc_ids over another data file: other texts, opposite gold labels; paired as if one document
    # each, the difference read -1.0 [-1.0, -1.0], p 0.001
    other = {"t1": [{**s, "doc_hash": f"other{s['doc_id']}"} for s in _samples([(1, 0, 2), (0, 1, 2)])]}
    hashed = {"t1": [{**s, "doc_hash": f"h{s['doc_id']}"} for s in base["t1"]]}
    with pytest.raises(ValueError, match=r"t1: the runs scored different documents under the same doc_id \(2 of 2, "
                                         r"first doc_id 0\); run both on the same data"):
        stats.paired_task_mean(f1_macro, hashed, other)
    bare = {"t1": _samples([(0, 0, 2), (1, 1, 2)], hashed=False)}
    texts = {"t1": [{**s, "doc": {"text": f"other {s['doc_id']}"}} for s in bare["t1"]]}  # no hash: the texts
    with pytest.raises(ValueError, match="under the same doc_id"):
        stats.paired_task_mean(f1_macro, {"t1": [{**s, "doc": {"text": f"t{s['doc_id']}"}} for s in bare["t1"]]},
                               texts)
    # neither hash nor text: None == None would pair any two documents under one doc_id
    with pytest.raises(ValueError, match=r"t1: a per-sample log holds neither lm-eval's doc_hash nor the document's "
                                         r"text \(doc_id 0\)"):
        stats.paired_task_mean(f1_macro, bare, bare)
    # one document, other answers: lm-eval's target_hash differs where both logs hold it
    answered = {"t1": [{**s, "target_hash": f"t{s['doc_id']}"} for s in hashed["t1"]]}
    relabelled = {"t1": [{**s, "target_hash": "t0"} for s in hashed["t1"]]}
    with pytest.raises(ValueError, match=r"target_hash differs on 1 of 2, first doc_id 1\)"):
        stats.paired_task_mean(f1_macro, answered, relabelled)
    assert stats.paired_task_mean(f1_macro, answered, hashed)["diff"] == 0.0  # one log without target_hash: paired


def test_stratified_indices_resample_within_each_stratum():
    keys = ["b", "a", "b", "a", "a"]
    idx = stats.stratified_indices(keys, iters=200, seed=7)
    assert idx.shape == (200, 5)
    # each position draws only from the positions of its own stratum: a stays a, b stays b
    assert set(idx[:, [1, 3, 4]].ravel()) == {1, 3, 4} and set(idx[:, [0, 2]].ravel()) == {0, 2}
    # stratum k in sorted key order draws from the stream seeded seed + k: "a" is 0 (seed 7), "b" is 1 (seed 8)
    a = np.random.default_rng(7).integers(0, 3, size=(200, 3))
    b = np.random.default_rng(8).integers(0, 2, size=(200, 2))
    assert (idx[:, [1, 3, 4]] == np.array([1, 3, 4])[a]).all() and (idx[:, [0, 2]] == np.array([0, 2])[b]).all()
    # one stratum: the plain resample
    assert (stats.stratified_indices(["t"] * 4, 50, 3) == stats.resample_indices(4, 50, 3)).all()


def test_task_mean_keeps_every_task_in_every_resample():
    # t1 has one document, t2 three: pooled resampling would leave t1 out of (3/4)^4 = 32 % of the resamples
    # and make those resamples' means t2's alone; within tasks, t1 (mean 1.0) is in every one
    items = [("t1", 1.0), ("t2", 0.0), ("t2", 0.0), ("t2", 0.0)]
    task_mean = stats.TaskMean(stats.mean)
    assert task_mean(items) == 0.5
    idx = stats.stratified_indices([t for t, _ in items], 100, 0)
    assert (task_mean.batched(items, idx) == 0.5).all()
    assert stats.bootstrap_ci(task_mean, items) == (0.5, 0.5)


def test_a_task_mean_over_one_document_per_task_has_no_interval():
    # every resample draws each task's one document again: the mean 0.5 in all of them, an interval [0.5, 0.5] that
    # read as certainty, where one task of one document has none; a second document in one task gives one
    task_mean = stats.TaskMean(stats.mean)
    assert task_mean([("t1", 0.4), ("t2", 0.6)]) == 0.5
    assert all(np.isnan(stats.bootstrap_ci(task_mean, [("t1", 0.4), ("t2", 0.6)])))
    assert not stats.enough_items(task_mean, [("t1", 0.4), ("t2", 0.6)])
    assert stats.enough_items(task_mean, [("t1", 0.4), ("t2", 0.6), ("t2", 0.8)])
    low, high = stats.bootstrap_ci(task_mean, [("t1", 0.4), ("t2", 0.6), ("t2", 0.8)])
    assert (low, high) == (pytest.approx(0.5), pytest.approx(0.6))  # t1 0.4 fixed, t2's mean 0.6, 0.7 or 0.8


def test_cluster_sums_and_mean_by_hand():
    # Q27 in two countries (0 and 1), Q28 in one (1), Q29 in two (1 and 1): sums 1, 1, 2 over 2, 1, 2 documents
    clusters = stats.cluster_sums(["27", "27", "28", "29", "29"], [0.0, 1.0, 1.0, 1.0, 1.0])
    assert clusters == [(1.0, 2), (1.0, 1), (2.0, 2)]
    assert stats.cluster_mean(clusters) == 4 / 5  # the mean over the five documents, not over the clusters (2/3)
    idx = np.array([[0, 0, 0], [1, 2, 2]])  # Q27 three times: 3 / 6; Q28, Q29, Q29: 5 / 5
    assert list(stats.cluster_mean.batched(clusters, idx)) == [0.5, 1.0]
    assert np.isnan(stats.cluster_mean([]))
    with pytest.raises(ValueError, match="differ in length"):
        stats.cluster_sums(["27"], [1.0, 0.0])


def test_one_document_clusters_give_the_document_numbers_bit_for_bit():
    """A culture with one country: each question is one document, and every number is the one the
    documents gave (values whose reprs are prefixes of each other included, as the pairing sorts by repr)."""
    rng = np.random.default_rng(11)
    a = [0.5, 0.55, 0.0, 1.0, 1e-05, 1.5e-05, *rng.random(40).tolist()]  # Python floats, as JSON gives
    b = [0.55, 0.5, 1.0, 1.0, 1.5e-05, 1e-05, *rng.random(40).tolist()]
    keys = list(range(len(a)))
    ca, cb = stats.cluster_sums(keys, a), stats.cluster_sums(keys, b)
    assert stats.cluster_mean(ca) == stats.mean(a)
    assert stats.bootstrap_ci(stats.cluster_mean, ca) == stats.bootstrap_ci(stats.mean, a)
    assert stats.paired_bootstrap(stats.cluster_mean, ca, cb) == stats.paired_bootstrap(stats.mean, a, b)
    cultures = ["x"] * 20 + ["y"] * (len(a) - 20)
    docs = stats.paired_bootstrap(stats.TaskMean(stats.mean), list(zip(cultures, a)), list(zip(cultures, b)))
    clustered = stats.paired_bootstrap(stats.TaskMean(stats.cluster_mean), list(zip(cultures, ca)),
                                       list(zip(cultures, cb)))
    assert clustered == docs


def test_two_countries_that_agree_count_as_one_question():
    """Two countries with the same score on every question (the same prompt, the same answer): the
    clusters' interval and p-value are those of the questions alone; resampling the documents as if
    independent doubles the sample and narrows the interval."""
    base = [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    adapter = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    q = list(range(len(base)))
    keys, twice_a, twice_b = q + q, base + base, adapter + adapter
    one = stats.paired_bootstrap(stats.mean, base, adapter)
    clustered = stats.paired_bootstrap(stats.cluster_mean, stats.cluster_sums(keys, twice_a),
                                       stats.cluster_sums(keys, twice_b))
    assert clustered == one and one["diff"] == pytest.approx(5 / 12)  # 4 of 12 questions agree before, 9 after
    documents = stats.paired_bootstrap(stats.mean, twice_a, twice_b)
    assert documents["diff"] == pytest.approx(5 / 12)
    assert documents["high"] - documents["low"] < one["high"] - one["low"]
    assert stats.bootstrap_ci(stats.cluster_mean, stats.cluster_sums(keys, twice_b)) == \
        stats.bootstrap_ci(stats.mean, adapter)
    # two questions, each moved 0 -> 1 in both countries: a round reaches |1| only when it swaps both clusters or
    # neither (1/2); exchanging the four documents alone it needs all four alike (1/8)
    pair = stats.paired_bootstrap(stats.cluster_mean, stats.cluster_sums([1, 1, 2, 2], [0.0] * 4),
                                  stats.cluster_sums([1, 1, 2, 2], [1.0] * 4))
    swap = np.random.default_rng((stats.SEED, 1)).integers(0, 2, size=(stats.ITERS, 2))
    assert pair["p_value"] == pytest.approx((1 + np.sum(swap[:, 0] == swap[:, 1])) / (1 + stats.ITERS))
    four = stats.paired_bootstrap(stats.mean, [0.0] * 4, [1.0] * 4)["p_value"]
    swap4 = np.random.default_rng((stats.SEED, 1)).integers(0, 2, size=(stats.ITERS, 4))
    assert four == pytest.approx((1 + np.sum((swap4 == swap4[:, :1]).all(axis=1))) / (1 + stats.ITERS))
    assert four == pytest.approx(1 / 8, abs=0.03)


def test_no_interval_around_a_nan_statistic():
    # one of 10 documents has no score (NaN): resamples that leave it out (about 35 % of them) would give
    # an interval of the other nine; the interval is NaN like the statistic
    items = [1.0] * 5 + [0.0] * 4 + [float("nan")]
    assert all(math.isnan(x) for x in stats.bootstrap_ci(stats.mean, items))
    paired = stats.paired_bootstrap(stats.mean, [0.0] * 10, items)
    assert all(math.isnan(paired[k]) for k in ("diff", "low", "high", "p_value"))


def test_holm_adjusts_by_rank_keeps_order_and_skips_nan():
    # sorted finite p: 0.01 x 4 = 0.04; 0.03 x 3 = 0.09; 0.04 x 2 = 0.08 -> not below the one before: 0.09; 0.5 x 1
    nan = float("nan")
    out = stats.holm([0.01, 0.04, 0.03, nan, 0.5])
    assert out[:3] == pytest.approx([0.04, 0.09, 0.09]) and math.isnan(out[3]) and out[4] == 0.5
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0] and stats.holm([]) == []


def test_tasks_that_share_their_texts_are_resampled_text_by_text():
    # two tasks that label the same 20 texts (as the six DETOXIS tasks do) and that the model answers alike:
    # 10 right, 10 wrong in both. Resampling each task on its own treats them as independent samples, and
    # their mean's interval is about 1/sqrt(2) as wide as one task's; drawing texts, each with its document
    # in both tasks, every resample of the mean is that of one task: exactly the one task's interval.
    from culture_tasks.classification import share, share_weighted

    texts = [f"t{i:02d}" for i in range(20)]
    values = [0.0] * 10 + [1.0] * 10  # texts t00-t09 wrong, t10-t19 right: both orders sort alike
    one_task = [("a", v) for v in values]
    clustered = [("a", text, (("a", v), ("b", v))) for text, v in zip(texts, values)]
    alone = stats.bootstrap_ci(stats.TaskMean(share, share_weighted), one_task)
    together = stats.bootstrap_ci(stats.ClusteredTaskMean(share, share_weighted), clustered)
    assert together == alone and stats.ClusteredTaskMean(share, share_weighted)(clustered) == 0.5
    low, high = stats.bootstrap_ci(stats.TaskMean(share, share_weighted), one_task + [("b", v) for v in values])
    assert (high - low) / (together[1] - together[0]) < 0.85  # the independent reading: too narrow


def test_paired_task_mean_resamples_shared_texts_as_the_leaderboard_does():
    # the Python form of the leaderboard's --baseline test: tasks that label the same texts are resampled and
    # swapped text by text, each text with its document in both tasks (text_clusters)
    from culture_tasks.classification import f1_macro_weighted

    def log(items):
        return [{"doc_id": i, "f1_macro": list(it), "doc": {"text": f"text {i}"}} for i, it in enumerate(items)]

    base = [(i % 2, 0, 2) for i in range(20)]
    adapter = [(i % 2, i % 2 if i < 12 else 0, 2) for i in range(20)]
    out = stats.paired_task_mean(f1_macro, {"a": log(base), "b": log(base)}, {"a": log(adapter), "b": log(adapter)},
                                 weighted=f1_macro_weighted)
    clusters = [[("a", f"text {i}", (("a", it), ("b", it))) for i, it in enumerate(run)] for run in (base, adapter)]
    expected = stats.paired_bootstrap(stats.ClusteredTaskMean(f1_macro, f1_macro_weighted), *clusters)
    assert {k: out[k] for k in expected} == pytest.approx(expected)
    assert stats.text_clusters([("a", "x", 1), ("b", "y", 2)]) is None  # nothing shared: TaskMean as before
    assert stats.text_clusters([("a", "x", 1), ("b", None, 2)]) is None  # a text unknown (an older log)
    families = stats.text_clusters([("c", "x", 1), ("b", "x", 2), ("a", "y", 3), ("b", "y", 4), ("d", "z", 5)])
    assert families == [("a", "x", (("c", 1), ("b", 2))), ("a", "y", (("a", 3), ("b", 4))), ("d", "z", (("d", 5),))]


def test_task_mean_of_macro_f1_resamples_with_the_run_s_design_weights_whatever_the_path():
    # without its weighted form TaskMean computed f1_macro alone on each resample, which weighs the resample
    # back to the task's label mix: (0.570, 0.834) against (0.542, 0.835) with it, on one complete run
    from culture_tasks.classification import f1_macro_weighted

    rng = np.random.default_rng(3)
    golds = rng.integers(0, 2, size=40)
    preds = np.where(rng.random(40) < 0.7, golds, 1 - golds)
    counts = np.bincount(golds)
    items = [("t", (int(g), int(p), 2, int(counts[g]))) for g, p in zip(golds, preds)]
    plain = stats.bootstrap_ci(f1_macro, [item for _, item in items])
    assert stats.bootstrap_ci(stats.TaskMean(f1_macro), items) == pytest.approx(plain)
    assert stats.bootstrap_ci(stats.TaskMean(f1_macro, f1_macro_weighted), items) == pytest.approx(plain)


def test_a_share_every_document_scored_alike_gets_the_exact_interval_not_a_point():
    # 20 documents without a parse failure printed [0.0, 0.0]; Clopper-Pearson for 0 of 20 is
    # [0, 1 - 0.025^(1/20)] = [0, 0.1684], for 20 of 20 [0.8316, 1]
    from culture_tasks.classification import share

    none = [(0.0, 0, 20)] * 20
    assert stats.bootstrap_ci(share, none) == pytest.approx((0.0, 1 - 0.025 ** (1 / 20)))
    assert stats.bootstrap_ci(share, [(1.0, 0, 20)] * 20) == pytest.approx((0.025 ** (1 / 20), 1.0))
    assert 1 - 0.025 ** (1 / 20) == pytest.approx(0.1684, abs=1e-4)
    mixed = [(float(i < 4), 0, 20) for i in range(20)]  # 4 of 20: the percentile interval as before
    low, high = stats.bootstrap_ci(share, mixed)
    assert 0.0 <= low < 0.2 < high < 0.5
    assert math.isnan(stats.bootstrap_ci(share, none[:19])[0])  # below MIN_DOCS no interval at all, as before


def test_a_mean_of_shares_that_are_all_zero_gets_an_exact_interval_not_a_point():
    """Two tasks, 20 and 30 documents, every one 0: the mean of the two shares has the variance of one share of
    n_eff = 2² / (1/20 + 1/30) = 48 documents, so its bound is 1 - 0.025^(1/48) = 0.07397 (by hand), not [0, 0];
    all 1 mirrors it; a task at 0 beside one at 1 keeps the percentile interval (the point)."""
    from culture_tasks.classification import share
    from culture_tasks.stats import TaskMean, bootstrap_ci

    zeros = [("a", 0.0)] * 20 + [("b", 0.0)] * 30
    low, high = bootstrap_ci(TaskMean(share), zeros)
    assert low == 0.0 and high == pytest.approx(0.0739733, abs=1e-6)
    low, high = bootstrap_ci(TaskMean(share), [(t, 1.0) for t, _ in zeros])
    assert high == 1.0 and low == pytest.approx(1 - 0.0739733, abs=1e-6)
    assert bootstrap_ci(TaskMean(share), [("a", 0.0)] * 20 + [("b", 1.0)] * 30) == (0.5, 0.5)


def test_tasks_that_share_texts_and_are_all_zero_get_the_exact_interval_of_their_texts():
    """Two tasks that label the same 20 texts, no parse failure in either: the texts are the units (a text's
    documents move together, as the resamples treat them), so the mean of the two shares is one share of 20
    texts, [0, 1 - 0.025^(1/20)] = [0, 0.1684] as one task's alone - not 0 of 40 independent documents,
    [0, 0.0881]. The mean over tasks weighs a text by c = the sum over its documents of 1 / (tasks x the task's
    documents), and is a share of n_eff = 1 / sum(c^2) texts: tasks a (x, y, z) and b (x) give c = 1/6 + 1/2, 1/6,
    1/6, n_eff = 1 / (4/9 + 1/36 + 1/36) = 2, bound 1 - 0.025^(1/2) = 0.8419 (by hand). Tasks with no text in
    common keep TaskMean's n_eff, 2^2 / (1/20 + 1/30) = 48."""
    from culture_tasks.classification import share, share_weighted

    clustered = stats.ClusteredTaskMean(share, share_weighted)
    shared = [("a", f"t{i:02d}", (("a", (0.0, 0, 20)), ("b", (0.0, 0, 20)))) for i in range(20)]
    assert stats.bootstrap_ci(clustered, shared) == pytest.approx((0.0, 1 - 0.025 ** (1 / 20)))
    assert stats.bootstrap_ci(clustered, shared) == pytest.approx(stats.bootstrap_ci(share, [(0.0, 0, 20)] * 20))
    assert 1 - 0.025 ** (1 / 20) == pytest.approx(0.1684, abs=1e-4)
    ones = [("a", text, tuple((t, (1.0, 0, 20)) for t, _ in pairs)) for _, text, pairs in shared]
    assert stats.bootstrap_ci(clustered, ones) == pytest.approx((0.025 ** (1 / 20), 1.0))
    uneven = [("a", "x", (("a", 0.0), ("b", 0.0))), ("a", "y", (("a", 0.0),)), ("a", "z", (("a", 0.0),))]
    assert clustered.alike_ci(uneven, 0.95) == pytest.approx((0.0, 1 - 0.025 ** 0.5))
    assert 1 - 0.025 ** 0.5 == pytest.approx(0.8419, abs=1e-4)
    apart = [("a", f"a{i}", (("a", 0.0),)) for i in range(20)] + [("b", f"b{i}", (("b", 0.0),)) for i in range(30)]
    assert clustered.alike_ci(apart, 0.95) == pytest.approx((0.0, 0.0739733), abs=1e-6)
    mixed = [("a", "x", (("a", 0.0), ("b", 1.0))), ("a", "y", (("a", 0.0), ("b", 1.0)))]
    assert clustered.alike_ci(mixed, 0.95) is None  # a task at 0 beside one at 1: the percentile interval stands


def test_wvs_majority_group_of_all_missed_questions_gets_the_exact_interval_over_questions():
    """QuestionMean resamples questions (a question's countries move together): 50 questions missed in two
    countries is 0 of 50, [0, 1 - 0.025^(1/50)] = [0, 0.0711]; wvs_jsd, a continuous mean, has no exact form."""
    from culture_tasks.leaderboard import QuestionMean
    from culture_tasks.stats import bootstrap_ci
    from culture_tasks.survey.tasks import majority_mean

    items = [(f"Q{i}", (("wvs_usa", 0.0), ("wvs_china", 0.0))) for i in range(50)]
    low, high = bootstrap_ci(QuestionMean(majority_mean), items)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 50), abs=1e-9) and high == pytest.approx(0.0711, abs=1e-4)
    assert bootstrap_ci(QuestionMean(), items) == (0.0, 0.0)


def test_randomisation_p_counts_rounds_that_reach_the_observed_difference_up_to_float_noise():
    # three documents (given in the pairing's repr order) that moved +0.1, +0.2 and -0.1: the observed difference of
    # means is 0.2 / 3. A round with signs s (+ kept, - swapped) gives (0.1 s0 + 0.2 s1 - 0.1 s2) / 3; its size is 0
    # when s0 differs from s1 = s2 (0.1 - 0.2 + 0.1, or its negative) and at least 0.2 / 3 in every other round, four
    # of them exactly 0.2 / 3 in arithmetic but not in floats (0.0666...64 against 0.0666...67): counted as reached,
    # p = (1 + rounds not 0) / (1 + 1000), about 3/4; without the tolerance about half of them are missed (0.529)
    a, b = [0.0, 0.0, 0.3], [0.1, 0.2, 0.2]
    out = stats.paired_bootstrap(stats.mean, a, b)
    swap = np.random.default_rng((stats.SEED, 1)).integers(0, 2, size=(stats.ITERS, 3))
    zero = (swap[:, 1] == swap[:, 2]) & (swap[:, 0] != swap[:, 1])
    assert out["diff"] == pytest.approx(0.2 / 3)
    assert out["p_value"] == pytest.approx((1 + np.sum(~zero)) / (1 + stats.ITERS))
    assert out["p_value"] == pytest.approx(0.75, abs=0.04)


def test_task_and_culture_scores_are_means_not_medians():
    # three tasks: 0.0, 0.0 and 0.9 -> the unweighted mean 0.3 (a median would say 0.0)
    items = [("t1", 0.0), ("t1", 0.0), ("t2", 0.0), ("t3", 1.0), ("t3", 0.8)]
    assert stats.TaskMean(stats.mean)(items) == pytest.approx(0.3)
    groups = {"culturellm": ["culturellm_x"], "culturellm_x": ["culturellm_x_a", "culturellm_x_b", "culturellm_x_c"]}
    metrics = {"culturellm_x_a": {"f1_macro": 0.9}, "culturellm_x_b": {"f1_macro": 0.3},
               "culturellm_x_c": {"f1_macro": 0.0}}
    assert stats.culture_means(metrics, groups) == {"x": pytest.approx(0.4)}  # (0.9 + 0.3 + 0) / 3; median 0.3


def test_a_resample_that_leaves_a_task_without_documents_averages_the_tasks_it_holds():
    # task a holds texts x and y, task b text x alone (one family). A resample drawing y twice has no document of b:
    # its value is task a's alone, 0.0, as the per-resample loop computes it - not NaN (a dropped resample).
    # [x, x]: a 1.0, b 0.0 -> 0.5; [x, y]: a (1 + 0) / 2, b 0.0 -> 0.25
    from culture_tasks.classification import share, share_weighted

    items = [("a", "x", (("a", 1.0), ("b", 0.0))), ("a", "y", (("a", 0.0),))]
    clustered = stats.ClusteredTaskMean(share, share_weighted)
    idx = np.array([[1, 1], [0, 0], [0, 1]])
    assert clustered.batched(items, idx).tolist() == pytest.approx([0.0, 0.5, 0.25])
    assert [clustered([items[i] for i in row]) for row in idx] == pytest.approx([0.0, 0.5, 0.25])


def test_a_rank_interval_is_shown_in_whole_ranks_rounded_outward():
    """Rounded to the nearest rank, [6.6, 51.3] read [7, 51], narrower than computed; outward it is [6, 52]. A bound
    on a whole rank stays that rank, also within float noise of it, and never crosses to the next one."""
    assert stats.rank_interval_text(6.6, 51.3) == "[6, 52]"
    assert stats.rank_interval_text(7.0, 51.0) == "[7, 51]"
    assert stats.rank_interval_text(2, 9) == "[2, 9]"
    assert stats.rank_interval_text(7.0000000001, 50.9999999999) == "[7, 51]"
    assert stats.rank_interval_text(6.9999999999, 51.0000000001) == "[7, 51]"
    # a percentile of 1,000 resampled ranks: 2.975 and 35.025 as float arithmetic leaves them
    assert stats.rank_interval_text(2.9750000000000227, 35.02499999999998) == "[2, 36]"
    assert stats.rank_interval_text(1.0, 10.024999999999977) == "[1, 11]"
    assert stats.rank_interval_text(math.nan, math.nan) == "[nan, nan]"


def test_the_vectorised_cluster_mean_is_the_resample_at_a_time_one():
    # items (sum, count): (1, 1), (3, 2), (2, 1); a resample taking the first twice and the third once: (1 + 1 + 2) /
    # (1 + 1 + 1) = 4/3; taking the second once: 3/2
    items = [(1.0, 1), (3.0, 2), (2.0, 1)]
    assert stats.cluster_mean_weighted(items, np.array([[2, 0, 1], [0, 1, 0]], dtype=float)).tolist() == [4 / 3, 1.5]
    rng = np.random.default_rng(5)
    cultures = ["x"] * 12 + ["y"] * 9
    a = [(c, (float(s), int(n))) for c, s, n in zip(cultures, rng.random(21) * 3, rng.integers(1, 4, 21))]
    b = [(c, (s + float(d), n)) for (c, (s, n)), d in zip(a, rng.normal(0.3, 0.5, 21))]
    loop = stats.paired_bootstrap(stats.TaskMean(stats.cluster_mean), a, b)
    fast = stats.paired_bootstrap(stats.TaskMean(stats.cluster_mean, stats.cluster_mean_weighted), a, b)
    assert fast.keys() == loop.keys()
    for key in loop:
        assert fast[key] == pytest.approx(loop[key], rel=1e-12, abs=1e-12), key
