"""The figures: files written, cells annotated with their values, series told apart without colour."""

from __future__ import annotations

import numpy as np

from culture_tasks import plots


def test_score_heatmap_writes_each_value_on_its_cell():
    fig = plots.score_heatmap("t", ["a", "b"], ["x", "y"], np.array([[0.25, np.nan], [0.5, 1.0]]))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["0.25", "–", "0.50", "1.00"]
    assert "<svg" in plots.to_svg(fig) and "<metadata>" not in plots.to_svg(fig)
    plots.pyplot().close(fig)


def test_radar_and_bars_differ_by_marker_line_and_hatch():
    fig = plots.vsm13_radar("r", [("m", dict.fromkeys(plots.VSM13_DIMS, 10.0)), ("s", dict.fromkeys(plots.VSM13_DIMS, 50.0))],
                            ("target", {"pdi": 40.0, "idv": 91.0}))
    lines = fig.axes[0].get_lines()
    assert [(ln.get_marker(), ln.get_linestyle()) for ln in lines] == [("o", "-"), ("s", "--"), ("o", "--")]
    assert lines[2].get_label() == "target (2 dims)"
    assert not fig.axes[0].collections  # no intervals given: no bands
    plots.pyplot().close(fig)
    band = {"pdi": (5.0, 15.0), "idv": (8.0, 12.0)}  # the other four dimensions without an interval
    fig = plots.vsm13_radar("r", [("m", dict.fromkeys(plots.VSM13_DIMS, 10.0)), ("s", dict.fromkeys(plots.VSM13_DIMS, 50.0))],
                            None, intervals=[band, {}])
    (shaded,) = fig.axes[0].collections  # one band: only m has intervals
    radii = shaded.get_paths()[0].vertices[:, 1]
    assert {5.0, 15.0, 8.0, 12.0} <= set(np.round(radii, 6)) and shaded.get_alpha() == 0.15
    plots.pyplot().close(fig)
    fig = plots.interval_bars("b", ["c1", "c2"], [("m", [(0.5, 0.4, 0.6), (None, None, None)]),
                                                   ("s", [(0.7, None, None), (0.2, 0.1, 0.3)])])
    hatches = [str(p.get_hatch()) for p in fig.axes[0].patches]
    assert hatches == ["", "//", "//"]  # (None, None, None) draws no bar
    assert [str(h.get_hatch()) for h in fig.axes[0].get_legend().legend_handles] == ["", "//"]
    plots.pyplot().close(fig)


def test_a_radar_profile_without_an_interval_says_so():
    # a profile whose result file holds no interval for any index was drawn like one known exactly
    band = {"pdi": (5.0, 15.0)}
    fig = plots.vsm13_radar("r", [("m", dict.fromkeys(plots.VSM13_DIMS, 10.0)), ("s", dict.fromkeys(plots.VSM13_DIMS, 50.0))],
                            ("target", dict.fromkeys(plots.VSM13_DIMS, 40.0)), intervals=[band, {"pdi": (np.nan, np.nan)}])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["m", "s (no interval)", "target"]
    plots.pyplot().close(fig)


def test_steering_matrix_and_loss_curve_files(tmp_path):
    result = {"vsm13": {"rows": ["USA", "CHN"], "columns": ["USA", "CHN"], "column_dims": [["pdi"] * 6, ["pdi"] * 6],
                        "distance": [[0.1, 0.9], [0.8, 0.2]], "plain_distance": [0.5, 0.5]}}
    plots.steering_heatmap(result, tmp_path / "steering.png")
    plots.loss_curve([{"generation": g, "best_so_far": 10.0 - g, "mean": 12.0 - g} for g in range(3)],
                     tmp_path / "loss.png", "USA", "VSM13 raw L1 (C = 0) to target")
    assert (tmp_path / "steering.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_interval_bars_draw_an_interval_that_misses_its_value():
    # a percentile interval need not contain its point (a biased statistic, or float noise of a
    # one-question topic): the whiskers still span low..high and the figure is drawn
    fig = plots.interval_bars("b", ["c1", "c2", "c3"], [("m", [(0.8, 0.6, 0.75), (0.5, 0.5 + 1e-16, 0.5),
                                                               (None, None, None)])])
    segments = [seg for c in fig.axes[0].collections for seg in c.get_segments()]
    vertical = sorted((round(s[0][1], 6), round(s[1][1], 6)) for s in segments if s[0][0] == s[1][0])
    assert vertical == [(0.5, 0.5), (0.6, 0.75)]
    plots.pyplot().close(fig)


def test_a_missing_value_leaves_a_gap_not_a_bar_at_zero():
    fig = plots.interval_bars("b", ["c1", "c2"], [("m", [(0.5, 0.4, 0.6), (None, None, None)]),
                                                   ("s", [(0.0, None, None), (0.2, 0.1, 0.3)]),
                                                   ("none", [(None, None, None), (None, None, None)])])
    bars = [(round(p.get_x() + p.get_width() / 2, 6), p.get_height()) for p in fig.axes[0].patches]
    width = 0.8 / 3
    assert bars == [(round(-width, 6), 0.5), (0.0, 0.0), (round(1.0, 6), 0.2)]  # a real 0 is drawn, a missing one not
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["m", "s", "none"]
    plots.pyplot().close(fig)


def test_a_bar_without_an_interval_says_so():
    # a one-question WVS topic (lm_eval --limit 16 leaves migration one) has a value and no interval: its bar stood
    # without whiskers and without a word, read as a value known exactly
    fig = plots.interval_bars("b", ["c1", "c2"], [("m", [(0.5, 0.4, 0.6), (0.7, None, None)]),
                                                   ("s", [(None, None, None), (0.2, float("nan"), 0.3)])])
    width = 0.8 / 2
    notes = [(t.get_text(), round(t.get_position()[0], 6), t.get_position()[1]) for t in fig.axes[0].texts]
    assert notes == [("no\ninterval", round(1 - width / 2, 6), 0.7), ("no\ninterval", round(1 + width / 2, 6), 0.2)]
    plots.pyplot().close(fig)


def test_the_loss_curve_names_the_objective_on_its_axis(tmp_path, monkeypatch):
    """The default objective is contrastive (minus the margin): the axis said "VSM13 L1 to target" for every one."""
    from aligners.objectives import LOSS_LABELS, OBJECTIVES

    assert set(LOSS_LABELS) == set(OBJECTIVES)
    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.append(fig))
    plots.loss_curve([{"generation": 1, "best_so_far": -0.5, "mean": -0.2}], tmp_path / "loss.png", "USA",
                     LOSS_LABELS["contrastive"])
    assert drawn[0].axes[0].get_ylabel() == "minus the margin (vsm13_margin)"


def test_heatmap_cells_carry_their_intervals():
    # every number on a heatmap stands beside its 95 % interval (the tables' rule): a cell without one says so
    intervals = np.array([[[0.125, 0.375], [np.nan, np.nan]], [[0.5, 0.75], [np.nan, np.nan]]])
    fig = plots.score_heatmap("t", ["a", "b"], ["x", "y"], np.array([[0.25, np.nan], [0.625, 1.0]]),
                              intervals=intervals, marks=[["", ""], ["‡", ""]])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["0.25\n[0.12, 0.38]", "–", "0.62‡\n[0.50, 0.75]", "1.00\nno interval"]
    plots.pyplot().close(fig)


def test_the_steering_heatmap_writes_each_distance_with_its_interval(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.append(fig))
    result = {"vsm13": {"rows": ["USA"], "columns": ["USA", "CHN"], "column_dims": [["pdi"] * 6, ["pdi"] * 2],
                        "distance": [[0.1, 0.9]], "distance_ci": [[[0.05, 0.2], [0.7, 1.1]]],
                        "plain_distance": [0.5, 0.6], "plain_distance_ci": [[0.4, 0.55], [0.5, 0.75]]}}
    plots.steering_heatmap(result, tmp_path / "steering.png")
    texts = [t.get_text() for t in drawn[0].axes[0].texts]
    assert texts == ["0.10\n[0.05, 0.20]", "0.90\n[0.70, 1.10]", "0.50\n[0.40, 0.55]", "0.60\n[0.50, 0.75]"]
    plots.pyplot().close(drawn[0])


def test_a_heatmap_cell_without_an_interval_says_why_under_the_figure():
    # "no interval" alone left a reader of the figure guessing: each reason is numbered on its cells, once under it
    too_few = "5 documents in a task; an interval of f1_macro needs 20 in each"
    no_logs = "no per-sample logs (run lm_eval with --log_samples)"
    intervals = np.array([[[0.125, 0.375], [np.nan, np.nan]], [[np.nan, np.nan], [np.nan, np.nan]]])
    fig = plots.score_heatmap("t", ["a", "b"], ["x", "y"], np.array([[0.25, 0.5], [0.625, 1.0]]),
                              intervals=intervals, reasons=[["", too_few], [no_logs, too_few]])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["0.25\n[0.12, 0.38]", "0.50\nno interval (1)", "0.62\nno interval (2)", "1.00\nno interval (1)"]
    assert [t.get_text() for t in fig.texts] == [f"(1) {too_few}\n(2) {no_logs}"]
    assert "(2) no per-sample logs" in plots.to_svg(fig)
    plots.pyplot().close(fig)
