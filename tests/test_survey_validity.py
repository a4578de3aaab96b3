"""Survey tasks on synthetic data: defective files, strict metadata, the VSM13 summary and intervals."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from culture_tasks.metadata import MetadataError, check_keys, model_arg_names, parse_bool
from culture_tasks.survey import tasks
from culture_tasks.survey.tasks import NoFewShot, item_result, load_vsm13, load_wvs, summarise_vsm13, vsm13_intervals
from culture_tasks.survey.vsm13 import DIMENSIONS, HOFSTEDE_FILE, find_target, load_hofstede, resolve_target
from tests.synthetic_wvs import write_data_root

HOFSTEDE_HEADER = "ctr;country;pdi;idv;mas;uai;ltowvs;ivr\n"


def _hofstede_root(tmp_path, rows: str):
    path = tmp_path / HOFSTEDE_FILE
    path.parent.mkdir(parents=True)
    path.write_text(HOFSTEDE_HEADER + rows, encoding="utf-8")
    return str(tmp_path)


def _items_root(tmp_path):
    (tmp_path / "vsm13").mkdir(exist_ok=True)
    lines = [json.dumps({"item": k, "stem": "", "text": f"item {k}", "options": {str(v): f"o{v}" for v in range(1, 6)}})
             for k in range(1, 25)]
    (tmp_path / "vsm13" / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- data defects


def test_wvs_question_with_only_missing_codes_is_skipped_with_a_warning(tmp_path, caplog):
    root = write_data_root(tmp_path)  # Q29: every respondent has a negative code
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        ds = load_wvs(str(root), wvs_country="USA", wvs_csv="English/United States.csv")["test"]
    assert ds["q_id"] == ["27", "28"]
    assert "1 question(s) skipped" in caplog.text and "Q29" in caplog.text


def test_wvs_file_without_any_valid_answer_is_one_clear_error(tmp_path):
    root = write_data_root(tmp_path)
    csv = root / "culturellm/English/United States.csv"
    csv.write_text("B_COUNTRY,B_COUNTRY_ALPHA,Q27,Q28,Q29\n840,USA,-1,-2,-4\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"United States\.csv: no respondent gave a valid answer"):
        load_wvs(str(root), wvs_country="USA", wvs_csv="English/United States.csv")


def test_non_numeric_hofstede_cell_affects_only_that_cell(tmp_path, caplog):
    root = _hofstede_root(tmp_path, "USA;U.S.A.;40;91;6x2;46;26;68\nGER;Germany;35;67;66;65;83;40\n")
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        usa = find_target("USA", root)
        germany = find_target("GER", root)
    assert usa.scores == {"pdi": 40, "idv": 91, "uai": 46, "lto": 26, "ivr": 68}  # mas left out
    assert germany.scores == {"pdi": 35, "idv": 67, "mas": 66, "uai": 65, "lto": 83, "ivr": 40}
    assert "U.S.A. (USA) column mas is '6x2'" in caplog.text


def test_short_rows_and_empty_hofstede_cells_are_reported_not_read_as_missing(tmp_path, caplog):
    # a row with a field too few or too many may have its scores in the wrong columns: skipped;
    # an empty cell is no "#NULL!": that dimension is left out with a warning, as a non-number
    root = _hofstede_root(tmp_path, "USA;U.S.A.;40;91;62;46;26\nGER;Germany;35;67;66;65;83;40;9\n"
                                    "CHI;China;80;;66;30;87;24\nJPN;Japan;54;46;95;92;88;#NULL!\n")
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        rows = {t.code: t.scores for t in load_hofstede(root)}
    assert rows == {"CHI": {"pdi": 80, "mas": 66, "uai": 30, "lto": 87, "ivr": 24},
                    "JPN": {"pdi": 54, "idv": 46, "mas": 95, "uai": 92, "lto": 88}}
    assert ".csv:2: row skipped: 7 fields, the header has 8" in caplog.text
    assert ".csv:3: row skipped: 9 fields, the header has 8" in caplog.text
    assert "China (CHI) column idv is '', not a number: idv left out" in caplog.text
    assert "JPN" not in caplog.text  # #NULL! is the file's own mark of a missing score


def test_crafted_hofstede_code_cannot_become_a_path(tmp_path, caplog):
    root = _hofstede_root(tmp_path, "../../x;Evil;1;2;3;4;5;6\nUSA;U.S.A.;40;91;62;46;26;68\n")
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        codes = [t.code for t in load_hofstede(root)]
    assert codes == ["USA"] and "'../../x'" in caplog.text
    # an explicit target's code comes from the user's country name: only letters, digits and _
    assert resolve_target("../../Saudi Arabia", [1, 2, 3, 4, 5, 6], root).code == "Saudi_Arabia"
    assert resolve_target("SAU", [1, 2, 3, 4, 5, 6], root).code == "SAU"


def test_a_hofstede_code_given_twice_keeps_its_first_row_everywhere_with_a_warning(tmp_path, caplog):
    from culture_tasks.survey.compare import hofstede_reference

    root = _hofstede_root(tmp_path, "USA;U.S.A.;40;91;62;46;26;68\nGER;Germany;35;67;66;65;83;40\n"
                                    "USA;United States;99;1;2;3;4;5\n")
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        rows = load_hofstede(root)
    assert [t.code for t in rows] == ["USA", "GER"]
    assert ".csv:4: row skipped: country code USA is given twice (line 2 is kept)" in caplog.text
    # the task's target (find_target) and the countries it is ranked among (the reference) agree
    assert find_target("USA", root).scores["pdi"] == hofstede_reference(root).profiles["USA"]["pdi"] == 40


def test_a_country_name_shared_by_two_codes_is_no_silent_choice(tmp_path):
    root = _hofstede_root(tmp_path, "GER;Germany;35;67;66;65;83;40\nGEE;Germany;#NULL!;#NULL!;#NULL!;#NULL!;78;34\n")
    with pytest.raises(ValueError, match=r"'germany' is the name of GER and GEE in .*; use the code"):
        find_target("germany", root)
    assert find_target("GEE", root).scores == {"lto": 78, "ivr": 34}


def test_a_hofstede_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
    # Python's own message named neither the file nor the line: "'utf-8' codec can't decode byte 0xe9 in position 71"
    root = _hofstede_root(tmp_path, "USA;U.S.A.;40;91;62;46;26;68\n")
    path = tmp_path / HOFSTEDE_FILE
    path.write_bytes(path.read_bytes() + "CIV;C\xf4te d'Ivoire;1;2;3;4;5;6\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"6-dimensions-for-website-2015-08-16\.csv:3: invalid UTF-8 at byte offset "
                                         r"73 .*; save the file as UTF-8"):
        load_hofstede(str(root))


def test_a_wvs_answers_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
    root = write_data_root(tmp_path)
    csv = root / "culturellm/English/United States.csv"
    lines = csv.read_bytes().split(b"\n")
    lines[2] += b"\xe9"
    offset = len(b"\n".join(lines[:3])) - 1
    csv.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match=rf"United States\.csv:3: invalid UTF-8 at byte offset {offset} "):
        load_wvs(str(root), wvs_country="USA", wvs_csv="English/United States.csv")


def test_a_wvs_question_column_given_twice_is_refused_not_read_from_the_last(tmp_path):
    # the second Q28 column held the answers a reader by name took for Q28: majority code 1 instead of 3
    root = write_data_root(tmp_path)
    csv = root / "culturellm/English/United States.csv"
    csv.write_text("B_COUNTRY,B_COUNTRY_ALPHA,Q27,Q28,Q29,Q28\n840,USA,1,3,2,1\n840,USA,2,3,2,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"United States\.csv: column\(s\) \['Q28'\] given twice in the header"):
        load_wvs(str(root), wvs_country="USA", wvs_csv="English/United States.csv")


def test_a_hofstede_column_given_twice_is_refused(tmp_path):
    root = _hofstede_root(tmp_path, "")
    (tmp_path / HOFSTEDE_FILE).write_text("ctr;country;pdi;idv;mas;uai;ltowvs;ivr;pdi\nUSA;U.S.A.;40;91;62;46;26;68;41\n",
                                          encoding="utf-8")
    with pytest.raises(ValueError, match=r"\.csv: column\(s\) \['pdi'\] given twice in the header"):
        load_hofstede(root)


def test_the_countries_a_vsm13_target_is_ranked_among_are_read_as_the_file_holds_them_now(tmp_path):
    # two evaluations in one process, Hofstede's file edited between them: the second ranked the target among
    # the first reading's countries (a cache keyed by the data folder), while its target came from the new one
    null4 = "#NULL!;#NULL!;#NULL!;#NULL!"
    root = _hofstede_root(tmp_path, f"USA;U.S.A.;{null4};10;20\nAAA;A;{null4};50;90\nBBB;B;{null4};90;10\n"
                                    f"CCC;C;{null4};30;60\n")
    comparison = {"code": "USA", "name": "U.S.A.", "data_dir": root}
    profile = {"pdi": 0.0, "idv": 0.0, "mas": 0.0, "uai": 0.0, "lto": 10.0, "ivr": 20.0}  # the target's own shape
    assert tasks._index_scores(profile, {"lto": 10, "ivr": 20}, comparison)["vsm13_rank"] == 1
    path = tmp_path / HOFSTEDE_FILE
    path.write_text(path.read_text(encoding="utf-8").replace(";50;90", ";60;70"), encoding="utf-8")
    # A (60, 70) now differs from the profile by one common offset, as the target does: a tie, ranked against it
    assert tasks._index_scores(profile, {"lto": 10, "ivr": 20}, comparison)["vsm13_rank"] == 2


def test_a_byte_order_mark_is_no_part_of_the_first_column(tmp_path):
    root = _hofstede_root(tmp_path, "USA;U.S.A.;40;91;62;46;26;68\nGER;Germany;35;67;66;65;83;40\n")
    path = tmp_path / HOFSTEDE_FILE
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert [t.code for t in load_hofstede(root)] == ["USA", "GER"]


@pytest.mark.parametrize("options", [{"1": "a", "2": "b", "4": "c", "5": "d", "6": "e"},
                                     {"0": "a", "1": "b", "2": "c", "3": "d", "4": "e"},
                                     {"1": "a", "2": "b", "3": "c", "4": "d"}])
def test_vsm13_item_options_must_be_the_answers_1_to_5(tmp_path, options):
    # the answer values are the option keys: a gap or a 0-based scale would score "4" as 3, or "0" as 1
    from culture_tasks.survey.vsm13 import load_items

    _items_root(tmp_path)
    path = tmp_path / "vsm13" / "items.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[6] = json.dumps({"item": 7, "stem": "", "text": "item 7", "options": options})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"items\.jsonl:7: item 7 has options .*; the VSM 2013 answers are 1-5"):
        load_items(str(tmp_path))


def test_a_vsm13_option_label_that_is_not_text_names_its_line(tmp_path):
    # a number as an option label reached the prompt as "C. 3"
    from culture_tasks.survey.vsm13 import load_items

    _items_root(tmp_path)
    path = tmp_path / "vsm13" / "items.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[6] = json.dumps({"item": 7, "stem": "", "text": "item 7", "options": {"1": "a", "2": "b", "3": 3,
                                                                              "4": "d", "5": "e"}})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r'items\.jsonl:7: options\["3"\] must be text, got int 3'):
        load_items(str(tmp_path))


@pytest.mark.parametrize("row, message", [
    # a misspelt "stem" was read as no stem: item 7 was asked without "Please think of an ideal job ..."
    ({"item": 7, "stme": "Please think of an ideal job", "text": "item 7"},
     r"items\.jsonl:7: unknown key\(s\) 'stme' \(did you mean 'stem'\?\); the keys are item, stem, text, options"),
    # 7.9 was read as item 7 (int() truncates); "seven" failed with int()'s message naming no file
    ({"item": 7.9, "stem": "", "text": "item 7"}, r"items\.jsonl:7: item 7\.9 is not an item number 1-24"),
    ({"item": "seven", "stem": "", "text": "item 7"}, r"items\.jsonl:7: item 'seven' is not an item number 1-24"),
    ({"item": True, "stem": "", "text": "item 7"}, r"items\.jsonl:7: item True is not an item number 1-24"),
    # "stem": null crashed with AttributeError ('NoneType' object has no attribute 'strip'), naming no file
    ({"item": 7, "stem": None, "text": "item 7"},
     r"items\.jsonl:7: stem must be text, got NoneType None; leave it out, or give \"\", for an item without one"),
    ({"item": 7, "stem": "", "text": ["item 7"]}, r"items\.jsonl:7: text must be text, got list \['item 7'\]"),
])
def test_vsm13_item_row_with_an_unknown_key_or_no_item_number_names_its_line(tmp_path, row, message):
    from culture_tasks.survey.vsm13 import load_items

    _items_root(tmp_path)
    path = tmp_path / "vsm13" / "items.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[6] = json.dumps({**row, "options": {str(v): f"o{v}" for v in range(1, 6)}})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_items(str(tmp_path))
    lines[6] = json.dumps({"item": "7", "stem": "", "text": "item 7", "options": {str(v): f"o{v}" for v in range(1, 6)}})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert [i.number for i in load_items(str(tmp_path))] == list(range(1, 25))  # "7" as written by hand: item 7


# --------------------------------------------------------------------------- metadata


def test_misspelled_metadata_key_is_an_error_listing_the_valid_ones(tmp_path):
    root = write_data_root(tmp_path)
    with pytest.raises(MetadataError, match=r"'datadir' \(did you mean 'data_dir'\?\); this task reads \['data_dir', 'questions'\]"):
        load_wvs(wvs_country="USA", wvs_csv="English/United States.csv", datadir=str(root))
    _hofstede_root(tmp_path, "USA;U.S.A.;40;91;62;46;26;68\n")
    _items_root(tmp_path)
    with pytest.raises(MetadataError, match=r"'traget'.*'target'"):
        load_vsm13(str(tmp_path), vsm13_country="USA", traget=[1, 2, 3, 4, 5, 6])


def test_a_target_source_without_a_target_is_an_error_not_a_false_label(tmp_path):
    # the Hofstede file's scores would be logged in every document as coming from the named source
    _hofstede_root(tmp_path, "USA;U.S.A.;40;91;62;46;26;68\n")
    _items_root(tmp_path)
    with pytest.raises(MetadataError, match=r"vsm13 \(USA\): --metadata target_source 'Masoud et al\. 2025' "
                                            r"names the source of an explicit target, but no target is given"):
        load_vsm13(str(tmp_path), vsm13_country="USA", target_source="Masoud et al. 2025")
    ds = load_vsm13(str(tmp_path), vsm13_country="USA")["test"]
    assert ds["target_source"][0] == "Hofstede 2015 file"


def test_model_args_and_lm_eval_keys_are_accepted(tmp_path):
    # the lm_eval CLI merges --model_args into the metadata
    for key in ("pretrained", "peft", "dtype", "device", "parallelize", "trust_remote_code", "max_length",
                "revision", "tokenizer", "backend", "add_bos_token", "attn_implementation", "tensor_parallel_size",
                "gpu_memory_utilization" if "gpu_memory_utilization" in model_arg_names() else "max_model_len"):
        check_keys("t", {key: 1}, ["data_dir"])
    check_keys("t", {"version": 1.0, "config_source": "x.yaml"}, ["data_dir"])
    root = write_data_root(tmp_path)
    ds = load_wvs(str(root), wvs_country="USA", wvs_csv="English/United States.csv", pretrained="m", version=1.0)
    assert len(ds["test"]) == 2
    # one run's metadata reaches every task: a VSM13 key in a run of wvs_* and vsm13_* tasks is fine
    ds = load_wvs(str(root), wvs_country="USA", wvs_csv="English/United States.csv", target=[1, 2, 3, 4, 5, 6])
    assert len(ds["test"]) == 2


def test_booleans_parse_strictly(tmp_path):
    assert parse_bool("x", "False") is False and parse_bool("x", True) is True
    assert [parse_bool("x", v) for v in ("no", "0", 1, "YES", 0)] == [False, False, True, True, False]  # as the CLIs
    for bad in ("flase", "", 2, None, 1.0, "on", " true", "False ", "1\n"):
        with pytest.raises(MetadataError, match=r"x must be true or false \(or yes/no/1/0\), got"):
            parse_bool("x", bad)
    root = write_data_root(tmp_path)
    ds = load_wvs(str(root), wvs_country="USA", wvs_csv="English/United States.csv", reversed_options="false")
    assert ds["test"]["order"][0] == [0, 1, 2, 3]


def test_survey_tasks_refuse_few_shot():
    sampler = NoFewShot([{"q": 1}, {"q": 2}])
    assert sampler.sample(0) == []
    with pytest.raises(ValueError, match=r"--num_fewshot 2: the wvs_\* and vsm13_\* survey tasks are zero-shot"):
        sampler.sample(2)


# --------------------------------------------------------------------------- VSM13 summary and intervals


def _docs(target: dict, mode: str = "expected"):
    return [{"item": k, "order": list(range(5)), "values": [1.0, 2.0, 3.0, 4.0, 5.0], "target": json.dumps(target),
             "constants": "{}", "answer_mode": mode} for k in range(1, 25)]


def _one_hot_ll(value: int) -> list[float]:
    return [0.0 if v == value else -1e9 for v in range(1, 6)]


def test_summary_computed_once_for_every_metric(monkeypatch, caplog):
    calls = []
    real = tasks.vsm13_indices
    monkeypatch.setattr(tasks, "vsm13_indices", lambda *a: calls.append(1) or real(*a))
    summarise_vsm13.cache.clear()
    items = [item_result(d, _one_hot_ll(1 + d["item"] % 5)) for d in _docs({"pdi": 10.0})]
    values = {key: getattr(tasks, key)(list(items)) for key in tasks.VSM13_METRICS}  # a fresh list each, as lm-eval
    assert len(calls) == 1
    assert values["vsm13_l1"] == pytest.approx(abs(values["pdi"] - 10.0))
    # too few items (--limit): NaN for every metric and its interval, with one warning
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        short = {key: getattr(tasks, key)(list(items[:5])) for key in tasks.VSM13_METRICS}
        lows = [getattr(tasks, key + "_ci_low")(list(items[:5])) for key in tasks.VSM13_METRICS]
    assert all(math.isnan(v) for v in [*short.values(), *lows])
    assert caplog.text.count("VSM13 needs all 24 items") == 1
    # the items evaluated may be chosen by --samples as well as cut by --limit: the warning names both
    assert "items 6-24 missing" in caplog.text and "--limit" in caplog.text and "--samples" in caplog.text


def test_respondent_bootstrap_matches_the_binomial_spread():
    # every item answered with certainty except item 7 (in PDI with weight 35): 50/50 between 1 and 2
    docs = _docs({d: 0.0 for d in DIMENSIONS})
    items = [item_result(d, [0.0, 0.0, -1e9, -1e9, -1e9] if d["item"] == 7 else _one_hot_ll(3)) for d in docs]
    point = summarise_vsm13(items)
    assert point["pdi"] == pytest.approx(35 * (1.5 - 3))
    ci = vsm13_intervals(items)
    # m7 = 1 + Binomial(50, 0.5) / 50; its 2.5/97.5 % quantiles are 18 and 32 of 50
    assert ci["pdi"][0] == pytest.approx(35 * (1 + 18 / 50 - 3), abs=1.5)
    assert ci["pdi"][1] == pytest.approx(35 * (1 + 32 / 50 - 3), abs=1.5)
    for d in ("idv", "mas", "uai", "lto", "ivr"):  # no uncertain item: a point interval
        assert ci[d] == (pytest.approx(point[d]), pytest.approx(point[d]))
    assert ci["vsm13_l1"][0] <= point["vsm13_l1"] <= ci["vsm13_l1"][1]
    np.testing.assert_equal(vsm13_intervals.__wrapped__(list(items)), ci)  # computed afresh: seeded, the same again
    assert math.isnan(point["vsm13_margin"])  # documents made by hand name no reference to rank against


FOUR = ("AAA;Aland;40;90;60;45;25;70\nBBB;Bland;80;20;50;85;80;30\n"
        "CCC;Cland;60;50;40;60;50;50\nDDD;Dland;30;70;70;30;40;60\n")


def _task_items(root, **kwargs):
    docs = load_vsm13(root, vsm13_country="AAA", **kwargs)["test"]
    return [item_result(d, _one_hot_ll(1 + d["item"] % 5)) for d in docs]


def test_margin_and_rank_are_reported_by_the_task_and_ignore_the_scale(tmp_path):
    """vsm13_margin / vsm13_rank (lm-eval metrics with intervals) are compare_vsm13's; with constants
    that make the indices Hofstede's own profile of the target, it ranks first; adding one more
    constant to every index moves L1 but neither margin nor rank."""
    from culture_tasks.survey import compare

    root = _hofstede_root(tmp_path, FOUR)
    _items_root(tmp_path)
    raw = summarise_vsm13(_task_items(root))
    expected = compare.compare_vsm13({d: raw[d] for d in DIMENSIONS}, "AAA", compare.hofstede_reference(root))
    assert raw["vsm13_margin"] == pytest.approx(expected["margin"]) and raw["vsm13_rank"] == expected["rank"]
    aland = {"pdi": 40, "idv": 90, "mas": 60, "uai": 45, "lto": 25, "ivr": 70}
    own = summarise_vsm13(_task_items(root, constants={d: aland[d] - raw[d] for d in DIMENSIONS}))
    assert {d: own[d] for d in DIMENSIONS} == pytest.approx(aland) and own["vsm13_l1"] == pytest.approx(0, abs=1e-9)
    assert own["vsm13_rank"] == 1 and own["vsm13_margin"] > 0
    shifted = summarise_vsm13(_task_items(root, constants={d: aland[d] - raw[d] + 17 for d in DIMENSIONS}))
    assert shifted["vsm13_l1"] == pytest.approx(6 * 17)
    assert shifted["vsm13_margin"] == pytest.approx(own["vsm13_margin"]) and shifted["vsm13_rank"] == 1
    low, high = vsm13_intervals(_task_items(root))["vsm13_margin"]  # certain answers: a point interval
    assert low == pytest.approx(raw["vsm13_margin"]) and high == pytest.approx(raw["vsm13_margin"])


def test_a_task_scored_again_after_a_hofstede_edit_is_ranked_among_the_edited_countries(tmp_path):
    # the same per-document results aggregated twice in one process, Bland's row made Aland's between them: the
    # summary and its interval were served from a cache keyed by the results alone, the first reading's rank 1
    root = _hofstede_root(tmp_path, FOUR)
    _items_root(tmp_path)
    raw = summarise_vsm13(_task_items(root))  # m_k = 1 + k % 5: pdi -75, idv 210, mas 0, uai 45, lto 10, ivr 75
    aland = {"pdi": 40, "idv": 90, "mas": 60, "uai": 45, "lto": 25, "ivr": 70}
    constants = {d: aland[d] - raw[d] for d in DIMENSIONS}  # the indices are Aland's own profile
    items = _task_items(root, constants=constants)
    assert summarise_vsm13(items)["vsm13_rank"] == 1 and vsm13_intervals(items)["vsm13_rank"] == (1, 1)
    path = tmp_path / HOFSTEDE_FILE
    path.write_text(path.read_text(encoding="utf-8").replace("BBB;Bland;80;20;50;85;80;30", "BBB;Bland;40;90;60;45;25;70"),
                    encoding="utf-8")
    items = _task_items(root, constants=constants)  # the same results: Aland's row and the answers are unchanged
    assert summarise_vsm13(items)["vsm13_rank"] == 2  # Bland is now as close as the target: a tie is no win
    assert vsm13_intervals(items)["vsm13_rank"] == (2, 2)
    assert tasks.vsm13_rank(list(items)) == 2


def test_margin_and_rank_vectorised_equal_compare_vsm13(data_root):
    from culture_tasks.survey import compare

    reference = compare.hofstede_reference(str(data_root))
    profiles = [{"pdi": 10.0, "idv": 60.0, "mas": 40.0, "uai": 55.0, "lto": 20.0, "ivr": 80.0},
                {"pdi": -30.0, "idv": 5.0, "mas": 12.0, "uai": -8.0, "lto": 44.0, "ivr": 3.0}]
    both = compare.margin_and_rank({d: np.array([p[d] for p in profiles]) for d in DIMENSIONS}, "CHI", reference)
    for i, profile in enumerate(profiles):
        one = compare.compare_vsm13(profile, "CHI", reference)
        assert both["margin"][i] == pytest.approx(one["margin"]) and both["rank"][i] == one["rank"]


def test_argmax_answers_have_point_intervals():
    items = [item_result(d, [0.0, -0.1, -0.2, -0.3, -0.4]) for d in _docs({"lto": 30.0, "ivr": 50.0}, "argmax")]
    point = summarise_vsm13(items)
    for key, (low, high) in vsm13_intervals(items).items():
        assert low == pytest.approx(point[key], nan_ok=True) and high == pytest.approx(point[key], nan_ok=True)
    assert tasks.vsm13_dims(items) == 2


def test_partial_target_is_labelled(tmp_path, caplog):
    _hofstede_root(tmp_path, "SAU;Saudi Arabia;#NULL!;#NULL!;#NULL!;#NULL!;36;52\n")
    _items_root(tmp_path)
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        ds = load_vsm13(str(tmp_path), vsm13_country="SAU")["test"]
    assert "lacks pdi, idv, mas, uai" in caplog.text and "cover 2 of 6 dimensions" in caplog.text
    assert ds["target_source"][0] == "Hofstede 2015 file"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        ds = load_vsm13(str(tmp_path), vsm13_country="SAU", target=[95, 25, 60, 80, 36, 52],
                        target_source="Masoud et al. 2025")["test"]
    assert "lacks" not in caplog.text and ds["target_source"][0] == "Masoud et al. 2025"
    assert tasks.DIRECTIONLESS >= {"pdi", "pdi_ci_low", "ivr_ci_high", "vsm13_dims"}
    assert "vsm13_l1" not in tasks.DIRECTIONLESS


# --------------------------------------------------------------------------- generated YAMLs


def test_survey_yamls_are_current_and_every_metric_has_its_interval():
    from culture_tasks.paths import TASKS_DIR
    from culture_tasks.survey import _generate_configs as gen

    assert gen.main(["--check"]) == 0
    template = (TASKS_DIR / "vsm13" / "_vsm13_template_yaml").read_text(encoding="utf-8")
    for key in tasks.VSM13_METRICS:
        for suffix in ("", "_ci_low", "_ci_high"):
            assert f"{{metric: {key}{suffix}, aggregation: !function culture_tasks.survey.tasks.{key}{suffix}," in template
            assert callable(getattr(tasks, key + suffix))
    assert "{metric: vsm13_dims," in template and "vsm13_dims_ci" not in template
    wvs = (TASKS_DIR / "wvs" / "_wvs_template_yaml").read_text(encoding="utf-8")
    for key in tasks.WVS_METRICS:
        assert f"{{metric: {key}_ci_high, aggregation: !function culture_tasks.survey.tasks.{key}_ci_high," in wvs


def test_partial_profiles_are_grouped_apart(data_root):
    import yaml

    from culture_tasks.paths import TASKS_DIR
    from culture_tasks.survey.countries import listed_countries
    from culture_tasks.survey.instruments import PARTIAL_TARGETS

    partial = {t.code for t in load_hofstede(str(data_root)) if len(t.scores) < 6}
    listed = {c["hofstede"] for c in listed_countries() if c.get("hofstede")}
    assert PARTIAL_TARGETS == partial & listed  # IRQ, JOR, SAU: only LTO and IVR in the 2015 file
    full = yaml.safe_load((TASKS_DIR / "vsm13" / "_vsm13.yaml").read_text(encoding="utf-8"))["task"]
    apart = yaml.safe_load((TASKS_DIR / "vsm13" / "_vsm13_partial.yaml").read_text(encoding="utf-8"))["task"]
    assert apart == ["vsm13_iraq", "vsm13_jordan", "vsm13_saudi_arabia"] and not set(apart) & set(full)
    assert "vsm13_usa" in full


def test_a_balanced_vsm13_task_asks_each_item_in_both_orders_and_averages_them(data_root):
    # 24 items of 5 options (values 1..5); a model that puts all its mass on the first option it is shown answers 1
    # listed and 5 reversed, so every item's balanced answer is 3 and its distribution half on code 1, half on 5
    docs = load_vsm13(str(data_root), vsm13_country="USA", both_orders="true")["test"]
    assert len(docs) == 48 and docs["item"][:4] == [1, 1, 2, 2]
    assert docs["order"][:2] == [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]] and docs["options"][1] == docs["options"][0][::-1]
    first = [0.0, -60.0, -60.0, -60.0, -60.0]
    items = [item_result(doc, first) for doc in docs]
    means, dists, _ = tasks._item_table(items)
    assert means == {k: pytest.approx(3.0) for k in range(1, 25)}
    assert dists[7] == pytest.approx([0.5, 0, 0, 0, 0.5])
    assert all(summarise_vsm13(items)[d] == pytest.approx(0.0) for d in DIMENSIONS)


def test_a_balanced_task_needs_both_orders_of_every_item(data_root, caplog):
    # --limit 47 leaves item 24 asked listed only: its mean leans to that order, so the indices are NaN with one
    # warning naming it, as for a missing item; --samples taking every item's listed document alone is refused too
    docs = load_vsm13(str(data_root), vsm13_country="USA", both_orders=True)["test"]
    items = [item_result(doc, [0.0, -60.0, -60.0, -60.0, -60.0]) for doc in docs]
    assert [item[7] for item in items[:2]] == ["listed", "reversed"]
    assert summarise_vsm13(items)["pdi"] == pytest.approx(0.0)  # 48 documents: every item 3.0
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        cut = summarise_vsm13(items[:47])
        listed = summarise_vsm13(items[::2])
    assert all(math.isnan(cut[k]) and math.isnan(listed[k]) for k in tasks.VSM13_METRICS)
    assert "item 24 asked in one option order only" in caplog.text
    assert "items 1-24 asked in one option order only" in caplog.text
    assert all(math.isnan(v) for v in vsm13_intervals(items[:47])["pdi"])
    # a one-order task's 24 documents are complete as they are
    plain = [item_result(doc, [0.0, -60.0, -60.0, -60.0, -60.0])
             for doc in load_vsm13(str(data_root), vsm13_country="USA")["test"]]
    assert plain[0][7] == "" and summarise_vsm13(plain)["pdi"] == pytest.approx(0.0)


def test_balanced_indices_are_the_mean_of_the_two_orders(data_root):
    # an index is linear in the item means and a balanced item mean is the mean of its two orders' scores
    def logged(**kwargs):
        docs = load_vsm13(str(data_root), vsm13_country="USA", **kwargs)["test"]
        return [item_result(doc, [-((doc["item"] * (j + 2) + 3 * j * j) % 7) / 2 for j in range(len(doc["order"]))])
                for doc in docs]

    listed, reversed_, both = (summarise_vsm13(logged(**kw)) for kw in
                               ({}, {"reversed_options": True}, {"both_orders": True}))
    for d in DIMENSIONS:
        assert both[d] == pytest.approx((listed[d] + reversed_[d]) / 2)
    assert listed["pdi"] != pytest.approx(reversed_["pdi"])


def test_both_orders_is_strict_and_excludes_reversed_options(data_root):
    with pytest.raises(MetadataError, match=r"both_orders must be true or false \(or yes/no/1/0\), got 'ja'"):
        load_vsm13(str(data_root), vsm13_country="USA", both_orders="ja")
    with pytest.raises(MetadataError, match="both_orders and reversed_options are both true.*drop reversed_options"):
        load_vsm13(str(data_root), vsm13_country="USA", both_orders=True, reversed_options=True)
