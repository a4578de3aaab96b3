"""The per-seed summary that the choice of the aligner's default objective rests on, by hand."""

from __future__ import annotations

from benchmarks.aligner_table import print_seed_summary, seed_summary

DIMS = ["pdi", "idv", "mas", "uai", "lto", "ivr"]


def _run(objective, seed, ranks, margin, dims=DIMS, country="USA"):
    """ranks: (plain, persona, soft prompt)."""
    comp = {k: {"rank": r, "reciprocal_rank": 1 / r, "margin": margin if k == "de" else 0.0, "dims": dims,
                "countries": 65} for k, r in zip(("plain", "persona", "de"), ranks)}
    return {"objective": objective, "settings": {"seed": seed, "optimizer": "de"}, "report": {"comparison": comp},
            "target": {"country": country}}


def test_seed_summary_by_hand():
    runs = [_run("contrastive", 0, (4, 2, 1), 0.5), _run("contrastive", 0, (10, 5, 20), -0.1, country="CHN"),
            _run("l1", 0, (4, 2, 4), 0.0), _run("l1", 1, (10, 5, 5), 0.2),
            _run("l1", 1, (3, 3, 1), 1.0, dims=["lto", "ivr"])]  # two dimensions: left out
    out = seed_summary(runs)
    assert sorted(out) == [("contrastive", 0), ("l1", 0), ("l1", 1)]
    c = out[("contrastive", 0)]
    assert c["names"] == ("CHN", "USA")
    assert c["targets"] == 2 and c["mrr"] == (1 + 1 / 20) / 2 and c["mrr_plain"] == (1 / 4 + 1 / 10) / 2
    assert c["mrr_persona"] == (1 / 2 + 1 / 5) / 2 and abs(c["margin"] - 0.2) < 1e-12 and c["improved"] == 1
    assert out[("l1", 0)]["improved"] == 0  # the same rank as plain is no improvement
    assert out[("l1", 1)] == {"targets": 1, "names": ("USA",), "mrr": 0.2, "mrr_plain": 0.1, "mrr_persona": 0.2, "margin": 0.2,
                              "improved": 1}


def test_seeds_over_different_targets_are_not_pooled(capsys):
    """Seed 0 over USA and CHN, seed 1 over USA only: a mean of their MRRs would mix targets with seeds."""
    runs = [_run("contrastive", 0, (4, 2, 1), 0.5), _run("contrastive", 0, (10, 5, 20), -0.1, country="CHN"),
            _run("contrastive", 1, (4, 2, 2), 0.3)]
    print_seed_summary(runs)
    assert "| contrastive | all (2) | | not pooled: the seeds cover different targets |" in capsys.readouterr().out
    print_seed_summary(runs + [_run("contrastive", 1, (10, 5, 10), 0.1, country="CHN")])
    # seed 0: MRR (1 + 1/20)/2 = 0.525; seed 1: (1/2 + 1/10)/2 = 0.3; mean 0.4125, std 0.159; two seeds:
    # t(1) 12.706 × 0.159 / √2 = 1.429, so [-1.017, 1.842], cut to an MRR's range [0, 1]
    assert "| contrastive | all (2) | | 0.412 ± 0.159 [0.000, 1.000] |" in capsys.readouterr().out


def test_runs_of_other_settings_or_one_run_twice_are_not_pooled(tmp_path):
    """A reduced-budget and a full-budget seed 0 would make one row of two 'seeds' and one seed of 14 targets."""
    import json

    import pytest

    from benchmarks.aligner_table import main

    def write(name, **settings):
        run = _run("contrastive", 0, (4, 2, 1), 0.5)
        run["settings"].update({"model": "/m", "population": 8, "generations": 3, "device": "cpu", **settings})
        run["report"]["vsm13_l1"] = {"plain": 353.1, "persona": 353.4, "de": 350.0}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(run))
        return str(path)

    reduced, full = write("reduced"), write("full", population=32, generations=30, seed=1)
    with pytest.raises(SystemExit, match=f"aligner_table: {reduced} was made with generations 3, {full} with 30; "):
        main([reduced, full])
    again = write("again", device="cuda")
    with pytest.raises(SystemExit, match=f"aligner_table: {reduced} and {again} are both USA, contrastive \\(de\\), "
                                         "seed 0; pass each run once"):
        main([reduced, again])
    main([reduced, write("seed1", seed=1, device="cuda", batch_size=8)])  # another seed on another device pools
    # a run stored before --option-order asked the options listed: it pools with a listed run, not a balanced one
    balanced = write("balanced", seed=1, option_order="balanced")
    with pytest.raises(SystemExit, match=f"{reduced} was made with option_order 'listed', {balanced} with 'balanced'"):
        main([reduced, balanced])
    main([reduced, write("listed", seed=1, option_order="listed")])


def test_the_wvs_columns_give_the_spread_over_seeds_as_the_others_do(tmp_path, capsys):
    """Two seeds: WVS 1-JSD 0.30 and 0.34 for the soft prompt (mean 0.320, std 0.028; t(1) 12.706 × 0.028 / √2
    = 0.254: [0.066, 0.574]), 0.31 for the plain model in both, printed once, with the question interval its
    runs recorded; the L1 columns beside them alike (350.0 and 351.0: 350.5 ± 0.7, ± 6.353: [344.1, 356.9])."""
    import json

    from benchmarks.aligner_table import main

    paths = []
    for seed, soft in ((0, 0.30), (1, 0.34)):
        run = _run("contrastive", seed, (4, 2, 1), 0.5)
        run["settings"].update({"model": "/m", "population": 8, "generations": 3})
        run["report"].update({"vsm13_l1": {"plain": 353.1, "de": 350.0 + seed},
                              "vsm13_l1_ci": {"plain": [290.0, 420.0], "de": [280.0 + seed, 410.0]},
                              "wvs": {"task": "wvs_usa", "plain": {"wvs_jsd": 0.31, "wvs_jsd_ci": [0.25, 0.37]},
                                      "de": {"wvs_jsd": soft}}})
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps(run))
        paths.append(str(path))
    main(paths)
    out = capsys.readouterr().out
    assert ("| USA | 2 | 353.1 [290.0, 420.0] | – | 350.5 ± 0.7 [344.1, 356.9] | – | – | 0.310 [0.250, 0.370] | "
            "0.320 ± 0.028 [0.066, 0.574] |") in out
    assert out.startswith("Cells: a value every seed gave alike")


def test_a_baseline_cell_shows_an_interval_only_when_every_seed_recorded_that_one(tmp_path, capsys):
    """The plain model scores 353.1 at both seeds; one seed's run was made before intervals (none recorded), so
    the cell has no interval rather than one seed's; ranks 4 and 4 with [2, 9] recorded by both: '4 [2, 9]'."""
    import json

    from benchmarks.aligner_table import main

    paths = []
    for seed in (0, 1):
        run = _run("contrastive", seed, (4, 2, 1 + seed), 0.5)
        run["settings"].update({"model": "/m", "population": 8, "generations": 3})
        run["report"]["vsm13_l1"] = {"plain": 353.1, "de": 350.0}
        if seed == 0:
            run["report"]["vsm13_l1_ci"] = {"plain": [290.0, 420.0], "de": [280.0, 410.0]}
        for who in ("plain", "persona", "de"):
            run["report"]["comparison"][who]["rank_ci"] = [2, 9]
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps(run))
        paths.append(str(path))
    main(paths)
    out = capsys.readouterr().out
    assert "| USA | 2 | 353.1 | – | 350.0 | – | – | – | – |" in out
    # soft prompt ranks 1 and 2: 1.5 ± 0.7, t(1) × 0.707 / √2 = 6.353: [-4.9, 7.9], cut to ranks 1..65
    assert "| USA | 6 | 65 | 4 [2, 9] | 2 [2, 9] | 2 ± 1 [1, 8] |" in out


def test_a_seed_without_baselines_is_not_pooled_with_seeds_that_have_them(tmp_path):
    """Seed 1 run with --no-baselines has no WVS, reversed-option or rank figures: in a row of '2' seeds the
    WVS cells were seed 0's alone (0.310, 0.300, printed without ±) and its rank cells one seed's rank."""
    import json

    import pytest

    from benchmarks.aligner_table import main

    paths = []
    for seed, baselines in ((0, True), (1, False)):
        run = _run("contrastive", seed, (4, 2, 1), 0.5)
        run["settings"].update({"model": "/m", "population": 8, "generations": 3, "baselines": baselines})
        run["report"] = ({"vsm13_l1": {"plain": 353.1, "de": 350.0}, "comparison": run["report"]["comparison"],
                          "wvs": {"task": "wvs_usa", "plain": {"wvs_jsd": 0.31}, "de": {"wvs_jsd": 0.30}}}
                         if baselines else {"vsm13_l1": {"de": 351.0}})
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps(run))
        paths.append(str(path))
    with pytest.raises(SystemExit, match=f"aligner_table: {paths[0]} was made with baselines True, {paths[1]} with "
                                         "False"):
        main(paths)


def test_runs_computed_from_other_model_content_dtype_or_data_are_not_pooled(tmp_path):
    """Same settings, but another model's content under the path, weights loaded in another dtype, or another
    Hofstede file / VSM13 items: one row's mean ± sd over them would mix searches of different inputs."""
    import json

    import pytest

    from benchmarks.aligner_table import main

    def write(name, seed, dtype="torch.float32", **inputs):
        run = _run("l1", seed, (4, 2, 1), 0.5)
        run["settings"].update({"model": "/m", "population": 8, "generations": 3})
        run["report"]["vsm13_l1"] = {"plain": 353.1, "persona": 353.4, "de": 350.0 + seed}
        run["dtype_loaded"] = dtype
        run["inputs"] = {"model_fingerprint": "sha256-full:AAAA", "data_dir": f"/data{seed}", "vsm13_items": "sha256:I",
                         "hofstede_reference": "sha256:H1", **inputs}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(run))
        return str(path)

    first = write("seed0", 0)
    main([first, write("seed1", 1)])  # another data_dir, the same files by content: pooled
    for key, value, inputs, dtype in (("model_fingerprint", "'sha256-full:BBBB'", {"model_fingerprint": "sha256-full:BBBB"}, None),
                                      ("hofstede_reference", "'sha256:H2'", {"hofstede_reference": "sha256:H2"}, None),
                                      ("vsm13_items", "'sha256:J'", {"vsm13_items": "sha256:J"}, None),
                                      ("dtype_loaded", "'torch.bfloat16'", {}, "torch.bfloat16")):
        other = write(f"other_{key}", 1, **({"dtype": dtype} if dtype else {}), **inputs)
        was = {"model_fingerprint": "'sha256-full:AAAA'", "hofstede_reference": "'sha256:H1'",
               "vsm13_items": "'sha256:I'", "dtype_loaded": "'torch.float32'"}[key]
        with pytest.raises(SystemExit) as raised:
            main([first, other])
        assert str(raised.value) == (f"aligner_table: {first} was computed from {key} {was}, {other} from {value}; one "
                                     "table pools runs of one model, dtype and data")
    older = write("older", 1, model_fingerprint="sha256:AAAA")  # the earlier (first/last MiB) scheme
    with pytest.raises(SystemExit, match=r"\(fingerprints of two schemes: whether the model is the same cannot be "
                                         r"told; rerun the older one\)"):
        main([first, older])


PATTERN = (1, -1, 1, -1, 1, -1)


def _reference():
    """Four countries of one shape at 0, 10, 20 and 30 times it: a flat profile (every index alike) is at distance 0
    from AAA and further from each next one, whichever country is left out of the spread."""
    from culture_tasks.survey.compare import Reference

    profiles = {code: {d: k * p for d, p in zip(DIMS, PATTERN)} for code, k in zip(("AAA", "BBB", "CCC", "DDD"),
                                                                                    (0, 10, 20, 30))}
    return Reference(profiles, {c: c for c in profiles})


def _run_with_means(seed, code, means, rank):
    """A run of target ``code`` whose three prompts recorded the same item means and rank."""
    run = _run("l1", seed, (rank, rank, rank), 0.0, country=code)
    run["target"]["scores"] = _reference().profiles[code]
    for comp in run["report"]["comparison"].values():
        comp["target"] = code
    run["report"]["item_means"] = {k: {str(i): m for i, m in means.items()} for k in ("plain", "persona", "de")}
    return run


def test_a_seeds_mrr_interval_resamples_the_recorded_item_means_of_all_its_targets():
    """Every item mean 3.0: every index is 0 in every resample, the flat profile, rank 1 for AAA and 3 for CCC
    (AAA and BBB no further): MRR (1 + 1/3) / 2 = 0.667 in each resample, an interval of width 0."""
    from benchmarks.aligner_table import seed_summary

    flat = {i: 3.0 for i in range(1, 25)}
    out = seed_summary([_run_with_means(0, "AAA", flat, 1), _run_with_means(0, "CCC", flat, 3)], _reference())
    summary = out[("l1", 0)]
    assert summary["mrr"] == 2 / 3
    for key in ("mrr_ci", "mrr_plain_ci", "mrr_persona_ci"):
        assert summary[key] == [2 / 3, 2 / 3]


def test_the_resamples_of_a_seeds_targets_are_paired_item_pair_by_item_pair():
    """Two targets with the same item means: resample i draws the same item pairs in both, so their mean reciprocal
    rank is each one's in every resample and the interval is one run's. Independent draws would narrow it."""
    import numpy as np

    from benchmarks.aligner_table import seed_summary, summary_intervals

    rng = np.random.default_rng(7)
    means = {i: float(m) for i, m in zip(range(1, 25), rng.uniform(1, 5, 24))}
    one = _run_with_means(0, "BBB", means, 2)
    alone = summary_intervals([one], _reference())
    assert alone["mrr_ci"][0] < alone["mrr_ci"][1]  # the ranks differ between resamples
    both = seed_summary([one, _run_with_means(0, "BBB", means, 2)], _reference())[("l1", 0)]
    assert both["mrr_ci"] == alone["mrr_ci"] and both["margin_ci"] == alone["margin_ci"]


def test_a_seed_with_a_run_that_recorded_no_item_means_has_no_interval_and_says_why(capsys):
    from benchmarks.aligner_table import NO_SEED_INTERVAL, print_seed_summary

    flat = {i: 3.0 for i in range(1, 25)}
    older = _run("l1", 0, (3, 3, 3), 0.0, country="CCC")  # made before item means were recorded
    older["report"]["comparison"]["de"]["target"] = "CCC"
    runs = [_run_with_means(0, "AAA", flat, 1), older]
    for run in runs:
        run["settings"]["data_dir"] = None
    print_seed_summary(runs)
    out = capsys.readouterr().out
    assert "| l1 | 0 | 2 | 0.667 | 0.667 | 0.667 | 0.000 | 0 of 2 |" in out and NO_SEED_INTERVAL in out


def test_the_note_on_missing_intervals_comes_under_the_table_not_inside_it(capsys):
    """Markdown ends a table at its first line that is not a row: a note printed between the seeds' rows and the
    'all' row would leave that row without a header. Two seeds of one target, made before item means were
    recorded: USA ranks 2 and 4 (plain 4), MRR 0.5 and 0.25, mean 0.375 ± 0.177; the note follows the table."""
    from benchmarks.aligner_table import NO_SEED_INTERVAL, print_seed_summary

    print_seed_summary([_run("contrastive", 0, (4, 2, 2), 0.5), _run("contrastive", 1, (4, 2, 4), 0.1)])
    lines = capsys.readouterr().out.strip().splitlines()
    header = lines.index(next(line for line in lines if line.startswith("| objective |")))
    assert lines[header + 2:header + 5] == [
        "| contrastive | 0 | 1 | 0.500 | 0.250 | 0.500 | 0.500 | 1 of 1 |",
        "| contrastive | 1 | 1 | 0.250 | 0.250 | 0.500 | 0.100 | 0 of 1 |",
        "| contrastive | all (2) | | 0.375 ± 0.177 [0.000, 1.000] | 0.250 | 0.500 | 0.300 ± 0.283 [-2.241, 2.841] | "
        "0.5 ± 0.7 [0.0, 1.0] |"]
    assert lines[header + 5:] == ["", NO_SEED_INTERVAL]


def test_rank_intervals_are_rounded_outward(tmp_path, capsys):
    """A recorded rank interval [6.6, 51.3] reads [6, 52] (to the nearest rank it read [7, 51], narrower than it is);
    the soft prompt's ranks 20, 21, 23 over three seeds: mean 21.333, sd 1.528, t(2) 4.303 × 1.528 / √3 = 3.795:
    [17.539, 25.128], shown [17, 26] (nearest: [18, 25])."""
    import json

    from benchmarks.aligner_table import main

    paths = []
    for seed, soft in enumerate((20, 21, 23)):
        run = _run("contrastive", seed, (26, 30, soft), 0.5)
        run["settings"].update({"model": "/m", "population": 8, "generations": 3})
        run["report"]["vsm13_l1"] = {"plain": 353.1, "de": 350.0}
        run["report"]["comparison"]["plain"]["rank_ci"] = [6.6, 51.3]
        run["report"]["comparison"]["persona"]["rank_ci"] = [7.0000000001, 50.9999999999]
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps(run))
        paths.append(str(path))
    main(paths)
    assert "| USA | 6 | 65 | 26 [6, 52] | 30 [7, 51] | 21 ± 2 [17, 26] |" in capsys.readouterr().out
