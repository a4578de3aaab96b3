"""The survey scoring core against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from culture_tasks.data_root import DataRootError
from culture_tasks.survey import metrics
from culture_tasks.survey.vsm13 import (
    UnknownCountryError, find_target, load_items, resolve_target, vsm13_indices, vsm13_loss,
)
from culture_tasks.survey.wvs import load_country, load_questions, parse_scale

MEANS = dict(enumerate(
    [2.0, 1.5, 3.0, 2.5, 1.0, 2.0, 3.5, 4.0, 2.0, 3.0, 2.5, 3.5,
     2.0, 1.5, 3.0, 2.0, 3.0, 2.5, 1.5, 4.0, 3.0, 2.0, 2.5, 3.5], start=1))


def test_vsm13_indices_hand_computed():
    # PDI = 35(3.5-1.5) + 25(4.0-2.5) = 107.5;  IDV = 35(2.5-2.0) + 35(2.0-2.0) = 17.5
    # MAS = 35(1.0-3.0) + 35(4.0-3.0) = -35 (a 25 on the second term would give -45)
    # UAI = 40(2.5-3.0) + 25(3.0-3.5) = -32.5;  LTO = 40(2.0-1.5) + 25(1.5-2.0) = 7.5
    # IVR = 35(3.5-2.5) + 40(3.0-2.0) = 75
    assert vsm13_indices(MEANS) == pytest.approx(
        {"pdi": 107.5, "idv": 17.5, "mas": -35.0, "uai": -32.5, "lto": 7.5, "ivr": 75.0})


def test_vsm13_indices_every_term_of_the_manual_by_hand():
    # m_k = 1 + k / 10 makes every item pair differ (MEANS has m09 = m06, which hid IDV's second weight):
    # PDI = 35(m07 - m02) + 25(m20 - m23) = 35(0.5) + 25(-0.3) = 10;  IDV = 35(m04 - m01) + 35(m09 - m06) = 35(0.3) + 35(0.3)
    # = 21 (a 25 on the second term: 18);  MAS = 35(m05 - m03) + 35(m08 - m10) = 35(0.2) + 35(-0.2) = 0
    # UAI = 40(m18 - m15) + 25(m21 - m24) = 40(0.3) + 25(-0.3) = 4.5;  LTO = 40(m13 - m14) + 25(m19 - m22) = 40(-0.1) +
    # 25(-0.3) = -11.5;  IVR = 35(m12 - m11) + 40(m17 - m16) = 35(0.1) + 40(0.1) = 7.5
    means = {k: 1 + k / 10 for k in range(1, 25)}
    assert vsm13_indices(means) == pytest.approx(
        {"pdi": 10.0, "idv": 21.0, "mas": 0.0, "uai": 4.5, "lto": -11.5, "ivr": 7.5})
    # the manual's names of all six constants: C_ua, C_ls and C_ir too
    shifted = vsm13_indices(means, {"C_pd": 1, "C_ic": 2, "C_mf": 3, "C_ua": 4, "C_ls": 5, "C_ir": 6})
    assert shifted == pytest.approx({"pdi": 11.0, "idv": 23.0, "mas": 3.0, "uai": 8.5, "lto": -6.5, "ivr": 13.5})


def test_vsm13_indices_with_constants_by_either_name():
    constants = {"C_pd": 10, "C_ic": -5, "C_mf": 20, "uai": 100, "ivr": 1}
    assert vsm13_indices(MEANS, constants) == pytest.approx(
        {"pdi": 117.5, "idv": 12.5, "mas": -15.0, "uai": 67.5, "lto": 7.5, "ivr": 76.0})


def test_vsm13_loss_over_the_dimensions_the_target_has():
    loss = vsm13_loss(vsm13_indices(MEANS), {"pdi": 100.0, "idv": 20.0})
    assert loss == {"l1": pytest.approx(10.0), "mae": pytest.approx(5.0), "dimensions": 2}


def test_vsm13_loss_leaves_out_a_target_dimension_that_is_nan_or_none():
    # PDI 107.5 against 100: |7.5|; IDV NaN and MAS None are dimensions the target lacks, not NaN errors
    loss = vsm13_loss(vsm13_indices(MEANS), {"pdi": 100.0, "idv": math.nan, "mas": None})
    assert loss == {"l1": pytest.approx(7.5), "mae": pytest.approx(7.5), "dimensions": 1}


def test_vsm13_needs_every_item():
    with pytest.raises(ValueError, match=r"items \[24\]"):
        vsm13_indices({k: v for k, v in MEANS.items() if k != 24})


def test_jsd_similarity_extremes_and_middle():
    assert metrics.jsd_similarity([0.2, 0.8], [0.2, 0.8]) == pytest.approx(1.0)
    assert metrics.jsd_similarity([1, 0], [0, 1]) == pytest.approx(0.0)
    # M = (0.75, 0.25); KL(p|M) = log2(4/3); KL(q|M) = 0.5 log2(2/3) + 0.5; JS distance = sqrt(mean)
    js = math.sqrt(0.5 * (math.log2(4 / 3) + 0.5 * math.log2(2 / 3) + 0.5))
    assert metrics.jsd_similarity([1, 0], [0.5, 0.5]) == pytest.approx(1 - js)
    assert 1 - js == pytest.approx(0.442077, abs=1e-6)


def test_w1_similarity_extremes_and_middle():
    assert metrics.w1_similarity([0.1, 0.6, 0.3], [0.1, 0.6, 0.3]) == pytest.approx(1.0)
    assert metrics.w1_similarity([1, 0, 0], [0, 0, 1]) == pytest.approx(0.0)
    assert metrics.w1_similarity([1, 0, 0], [0, 1, 0]) == pytest.approx(0.5)
    assert metrics.w1_similarity([0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]) == pytest.approx(1 - 2 / 3)


def test_distribution_and_item_score():
    p = metrics.option_distribution([math.log(1), math.log(3)])
    assert p == pytest.approx([0.25, 0.75])
    assert metrics.item_score(p, [1, 2]) == pytest.approx(1.75)
    assert metrics.item_score(p, [1, 2], "argmax") == 2.0
    assert metrics.majority_agreement([0.2, 0.8], [0.4, 0.6]) == 1.0


def test_wvs_country_loader_excludes_missing_codes_and_average_rows(tmp_path):
    bank = tmp_path / "WVQ.jsonl"
    bank.write_text(
        json.dumps({"topic": "SOCIAL VALUES", "q_id": "27", "q_content": "a", "option": "1. SA 2. A 3. D 4. SD"}) + "\n"
        + json.dumps({"topic": "SOCIAL VALUES", "q_id": "122", "q_content": "b", "option": "2. Agree 1. Hard to say 0. Disagree"}) + "\n"
    )
    questions = load_questions(path=bank)
    csv = tmp_path / "X.csv"
    csv.write_text(
        "B_COUNTRY,B_COUNTRY_ALPHA,Q27,Q122\n"
        "368,IRQ,1,2\n368,IRQ,2,-1\n368,IRQ,-2,0\n368,IRQ,1,2\n"
        "Avg,,1.0,0.75\nAvg_First,,-0.5,1\nAvg_Last,,2,2\n"
    )
    answers = load_country(csv, questions)
    assert answers.respondents == 4 and answers.skipped_rows == 3
    assert answers.distributions["27"] == pytest.approx([2 / 3, 1 / 3, 0, 0])
    assert answers.distributions["122"] == pytest.approx([1 / 3, 0, 2 / 3])  # codes 0, 1, 2
    assert answers.counts["27"]["missing code -2"] == 1


def test_wvs_codes_that_are_not_whole_numbers_are_excluded_and_every_defect_is_reported(tmp_path, caplog):
    from culture_tasks.survey.wvs import report_once

    bank = tmp_path / "WVQ.jsonl"
    bank.write_text(json.dumps({"topic": "SOCIAL VALUES", "q_id": "27", "q_content": "a", "option": "1. SA 2. A 3. D 4. SD"}) + "\n")
    questions = load_questions(path=bank)
    csv = tmp_path / "Y.csv"  # 2.6 was truncated to code 2, and inf raised an OverflowError naming no file
    csv.write_text("B_COUNTRY,Q27\n1,1\n1,2.6\n1,inf\n1,-1\n1,7\n1,x\n1,2.0\n")
    report_once.cache_clear()
    with caplog.at_level("WARNING", logger="culture_tasks"):
        answers = load_country(csv, questions, "Y")
        load_country(csv, questions, "Y")  # a second task reading the same file: reported once
    assert answers.respondents == 7
    assert answers.distributions["27"] == pytest.approx([1 / 2, 1 / 2, 0, 0])  # codes 1 and 2.0 only
    assert answers.counts["27"]["not a whole-number code"] == 2
    line = ("WVS Y: 7 respondents, 0 average rows skipped, 5 missing/invalid answers excluded (not a whole-number "
            "code: 2, missing code: 1, out-of-scale code: 1, unreadable: 1)")
    assert [r.getMessage() for r in caplog.records].count(line) == 1


def test_wvs_rows_with_a_field_too_few_or_too_many_are_skipped_and_named(tmp_path, caplog):
    from culture_tasks.survey.wvs import report_once

    bank = tmp_path / "WVQ.jsonl"
    bank.write_text("".join(json.dumps({"topic": "SOCIAL VALUES", "q_id": q, "q_content": q, "option": "1. SA 2. A 3. D 4. SD"})
                            + "\n" for q in ("27", "28")))
    questions = load_questions(path=bank)
    csv = tmp_path / "Z.csv"
    # line 3: a stray comma moves the answer 4 to Q28 (it was read as Q27 unreadable, Q28 = 4);
    # line 4: a field short (Q28 missing: which of its answers stand where cannot be told)
    csv.write_text("B_COUNTRY,B_COUNTRY_ALPHA,Q27,Q28\n1,Z,1,2\n1,Z,,4,3\n1,Z,3\n1,Z,2,2\nAvg,,1.5,2\n")
    report_once.cache_clear()
    with caplog.at_level("WARNING", logger="culture_tasks"):
        answers = load_country(csv, questions, "Z")
    assert answers.respondents == 2 and answers.skipped_rows == 1
    assert answers.distributions["27"] == pytest.approx([1 / 2, 1 / 2, 0, 0])
    assert answers.distributions["28"] == pytest.approx([0, 1, 0, 0])
    assert [r.getMessage() for r in caplog.records] == [
        "WVS Z: 2 respondents, 1 average rows skipped, 0 missing/invalid answers excluded; 2 rows skipped with a "
        f"field too few or too many (their answers may stand under the wrong questions): {csv} lines 3, 4"]


def test_wvs_rows_repeating_an_earlier_row_are_kept_and_counted(tmp_path, caplog, data_root):
    from culture_tasks.survey.wvs import report_once

    bank = tmp_path / "WVQ.jsonl"
    bank.write_text(json.dumps({"topic": "SOCIAL VALUES", "q_id": "27", "q_content": "a", "option": "1. SA 2. A 3. D 4. SD"}) + "\n")
    questions = load_questions(path=bank)
    csv = tmp_path / "R.csv"  # the row "1,R,2" three times: two repeats, counted like every respondent
    csv.write_text("B_COUNTRY,B_COUNTRY_ALPHA,Q27\n1,R,2\n1,R,1\n1,R,2\n1,R,2\n")
    report_once.cache_clear()
    with caplog.at_level("WARNING", logger="culture_tasks"):
        answers = load_country(csv, questions, "R")
    assert answers.respondents == 4 and answers.repeated_rows == 2
    assert answers.distributions["27"] == pytest.approx([1 / 4, 3 / 4, 0, 0])
    assert caplog.records[0].getMessage() == ("WVS R: 4 respondents, 0 average rows skipped, 0 missing/invalid answers "
                                              "excluded; 2 rows repeat an earlier row exactly (kept)")
    # counted independently over the files: Mexico holds one row four times and nine rows twice
    real = load_questions(str(data_root))
    repeats = {name: load_country(data_root / "culturellm" / path, real).repeated_rows for name, path in (
        ("mexico", "Spanish/Mexico.csv"), ("argentina", "Spanish/Argentina.csv"), ("turkey", "Turkey/Turkey.csv"),
        ("iraq", "Arabic/Iraq.csv"), ("china", "China/China.csv"), ("usa", "English/United States.csv"))}
    assert repeats == {"mexico": 12, "argentina": 2, "turkey": 2, "iraq": 1, "china": 1, "usa": 0}


@pytest.mark.parametrize("change, message", [
    ({"topc": "SOCIAL VALUES"}, r"WVQ.jsonl:2: unknown key\(s\) 'topc' \(did you mean 'topic'\?\); the keys are "
                                r"option, q_content, q_id, topic"),
    # Q28 was scored in wvs_jsd but in no topic: wvs_jsd_social_values averaged the other question alone
    ({"topic": "SOCIAL VALUE"}, r"WVQ.jsonl:2: topic 'SOCIAL VALUE' \(Q28\) is none of the topics the WVS tasks "
                                r"report \(social_values, migration, security, science_technology, religious_values, "
                                r"ethical_values, political_interest: its first two words\)"),
    ({"topic": ""}, r"WVQ.jsonl:2: topic '' \(Q28\) is none of the topics"),
    # these crashed with AttributeError ('list' object has no attribute 'strip'), naming no file
    ({"option": ["1. Agree", "2. Disagree"], "topic": "SOCIAL VALUES"},
     r"WVQ.jsonl:2: option must be text, got list \['1\. Agree', "),
    ({"q_content": 28, "topic": "SOCIAL VALUES"},
     r"WVQ.jsonl:2: q_content must be text, got int 28; give it as a JSON string"),
    ({"option": "agree or not", "topic": "SOCIAL VALUES"},
     r"WVQ.jsonl:2: option: cannot read an answer scale from 'agree or not'; write it as"),
])
def test_a_seed_bank_row_with_an_unknown_key_or_topic_names_its_line(tmp_path, change, message):
    row = {"topic": "SOCIAL VALUES", "q_id": "27", "q_content": "a", "option": "1. SA 2. A 3. D 4. SD"}
    other = {k: v for k, v in {**row, "q_id": "28", "q_content": "b"}.items() if k != "topic"}
    bank = tmp_path / "WVQ.jsonl"
    bank.write_text(json.dumps(row) + "\n" + json.dumps({**other, **change}) + "\n")
    with pytest.raises(ValueError, match=message):
        load_questions(path=bank)


def test_every_wvs_option_string_parses(data_root):
    questions = load_questions(str(data_root))
    assert len(questions) == 50
    by_id = {q.q_id: q for q in questions}
    for q in questions:
        assert list(q.scale.codes) == list(range(q.scale.codes[0], q.scale.codes[-1] + 1)), q.q_id
        assert len(q.scale.labels) == len(q.scale.codes)
    assert by_id["31"].scale.codes == (1, 2, 3, 4)
    assert by_id["31"].scale.labels[2] == "Disagree"
    assert by_id["158"].scale.codes == tuple(range(1, 11))
    assert by_id["158"].scale.labels[0] == "1 (Completely disagree)" and by_id["158"].scale.labels[4] == "5"
    assert by_id["122"].scale.labels == ("Disagree", "Hard to say", "Agree")
    assert parse_scale("1. Yes 2. No").labels == ("Yes", "No")


def test_duplicate_codes_are_renumbered_from_the_scale_s_own_first_code():
    # "0. Never 1. Sometimes 1. Often": the codes must be distinct; by position from the scale's own start, 0, 1, 2
    # (from 1 the answers coded 0 in the respondent files would fall outside the scale)
    scale = parse_scale("0. Never 1. Sometimes 1. Often")
    assert scale.codes == (0, 1, 2) and scale.labels == ("Never", "Sometimes", "Often")
    assert scale.fixes == ("duplicate codes [0, 1, 1] renumbered [0, 1, 2]",)


def test_real_country_file_and_items(data_root):
    questions = load_questions(str(data_root))
    answers = load_country(data_root / "culturellm/Arabic/Iraq.csv", questions)
    assert answers.respondents == 1200 and answers.skipped_rows == 1  # Iraq has only the Avg row
    usa = load_country(data_root / "culturellm/English/United States.csv", questions)
    assert usa.respondents == 2596 and usa.skipped_rows == 3  # Avg, Avg_First, Avg_Last
    assert "36" not in answers.distributions  # Q36 was not asked in Iraq (-4 throughout)
    for dist in answers.distributions.values():
        assert dist.sum() == pytest.approx(1.0) and (dist >= 0).all()
    items = load_items(str(data_root))
    assert [i.number for i in items] == list(range(1, 25))
    assert items[19].options[0] == "never"


def test_hofstede_targets(data_root):
    usa = find_target("usa", str(data_root))
    assert usa.scores == {"pdi": 40, "idv": 91, "mas": 62, "uai": 46, "lto": 26, "ivr": 68}
    assert find_target("CHN", str(data_root)).code == "CHI"
    assert find_target("germany", str(data_root)).scores["lto"] == 83
    assert find_target("SAU", str(data_root)).scores == {"lto": 36, "ivr": 52}
    explicit = resolve_target("Saudi Arabia", [95, 25, 60, 80, 36, 52], str(data_root))
    assert explicit.scores["uai"] == 80


def test_unknown_country_lists_the_known_ones(data_root):
    with pytest.raises(UnknownCountryError) as err:
        find_target("Atlantis", str(data_root))
    assert "Atlantis" in str(err.value) and "USA (U.S.A.)" in str(err.value)


def test_missing_items_file_names_the_path(tmp_path):
    (tmp_path / "vsm13").mkdir()
    with pytest.raises(DataRootError, match="vsm13/items.jsonl.*Values Survey Module 2013"):
        load_items(str(tmp_path))


def test_item_expected_value_uses_values_not_positions():
    assert np.dot(metrics.option_distribution([0, 0, 0, 0, 0]), [1, 2, 3, 4, 5]) == pytest.approx(3.0)


def test_repaired_option_scales_are_one_warning_naming_each_question(tmp_path, caplog):
    from culture_tasks.survey.wvs import report_once

    bank = tmp_path / "WVQ.jsonl"
    rows = [{"topic": "SOCIAL VALUES", "q_id": q, "q_content": "a", "option": "2. Agree 1. Hard to say 0. Disagree"}
            for q in ("122", "123")] + [{"topic": "SOCIAL VALUES", "q_id": "27", "q_content": "b", "option": "1. SA 2. A 3. D 4. SD"}]
    bank.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report_once.cache_clear()
    with caplog.at_level("WARNING", logger="culture_tasks"):
        load_questions(path=bank)
        load_questions(path=bank)
    assert [r.getMessage() for r in caplog.records] == [
        "WVS WVQ.jsonl: 2 option scales repaired: Q122, Q123: listed in descending order; sorted ascending"]


def test_majority_agreement_with_a_tied_majority():
    # Brazil Q231: codes 3 and 4 were each chosen by 33.0 % of the respondents; either is a majority answer
    country = [0.10, 0.24, 0.33, 0.33]
    assert metrics.majority_agreement([0.1, 0.1, 0.1, 0.7], country) == 1.0
    assert metrics.majority_agreement([0.1, 0.1, 0.7, 0.1], country) == 1.0
    assert metrics.majority_agreement([0.1, 0.7, 0.1, 0.1], country) == 0.0
    # a model torn between two answers, one of them the country's: half an agreement, in either order
    assert metrics.majority_agreement([0.4, 0.4, 0.2], [0.1, 0.6, 0.3]) == 0.5
    assert metrics.majority_agreement([0.4, 0.4, 0.2], [0.6, 0.1, 0.3]) == 0.5


def test_a_model_missing_or_hitting_every_majority_gets_the_exact_interval_not_a_point():
    # always answering "A" scored 0.0 on all 50 wvs_south_korea questions and printed [0, 0]; Clopper-Pearson
    # for 0 of 50 is [0, 1 - 0.025^(1/50)] = [0, 0.0711], for 50 of 50 [0.9289, 1]
    from culture_tasks.survey import tasks

    def interval(items):
        return tasks.wvs_majority_ci_low(items), tasks.wvs_majority_ci_high(items)

    assert interval([0.0] * 50) == pytest.approx((0.0, 0.0711), abs=1e-4)
    assert interval([1.0] * 50) == pytest.approx((0.9289, 1.0), abs=1e-4)
    assert interval([0.5] * 50) == (0.5, 0.5)  # every question a half-credit tie: the percentile interval stands
    low, high = interval([1.0] * 5 + [0.0] * 45)  # 5 of 50: the percentile interval as before
    assert 0.0 <= low < 0.1 < high < 0.25


def test_majority_agreement_on_brazil_s_tied_question(data_root):
    questions = load_questions(str(data_root))
    brazil = load_country(data_root / "culturellm" / "Portuguese" / "Brazil.csv", questions, "Brazil")
    q231 = brazil.distributions["231"]
    assert q231[2] == q231[3] == q231.max()
    assert metrics.majority_agreement([0.05, 0.05, 0.1, 0.8], q231) == 1.0


def test_china_answers_32_questions_and_its_two_unasked_topics_are_nan(data_root):
    from culture_tasks.survey import tasks

    questions = load_questions(str(data_root))
    china = load_country(data_root / "culturellm/China/China.csv", questions)
    topics = {q.q_id: q.topic for q in questions}
    missing = [q.q_id for q in questions if q.q_id not in china.distributions]
    assert len(missing) == 18 and len(china.distributions) == 32
    assert {q for q in missing if topics[q] not in ("SECURITY",)} == {"125", *map(str, range(224, 234))}
    assert all(q in missing for q in topics if topics[q] == "SECURITY")
    # a topic without a document: NaN, and so is its interval (lm-eval prints NaN)
    items = [("social_values", 0.5), ("social_values", 0.7)]
    assert tasks.wvs_jsd_social_values(items) == pytest.approx(0.6)
    assert math.isnan(tasks.wvs_jsd_security(items))
    assert math.isnan(tasks.wvs_jsd_security_ci_low(items)) and math.isnan(tasks.wvs_jsd_security_ci_high(items))
