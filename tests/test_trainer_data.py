"""Training examples: seed/augmented question files, WVS labels (majority vs mean), cultures."""

from __future__ import annotations

import json

import pytest

from culture_tasks.data_root import DataRootError
from culture_tasks.survey.wvs import load_questions
from tests.synthetic_wvs import write_data_root
from trainers.cultures import countries_of, evaluation_tasks
from trainers.examples import answer_index, build_examples
from trainers.questions import read_variants


def _letters(rows):
    return {r["q_id"]: r["messages"][1]["content"] for r in rows if r["step"] == "seed"}


def test_answer_index_hand_computed():
    codes = (1, 2, 3, 4)
    assert answer_index([0.2, 0.1, 0.3, 0.4], codes, "majority") == 3
    assert answer_index([0.5, 0.5, 0, 0], codes, "majority") == 0  # tie -> lower code
    assert answer_index([0, 0.5, 0.5, 0], codes, "mean") == 2  # mean 2.5 -> 3
    assert answer_index([0.5, 0, 0, 0.5], codes, "mean") == 2  # mean 2.5 -> 3
    assert answer_index([1 / 3, 1 / 3, 1 / 3, 0], codes, "mean") == 1  # mean 2.0 -> 2
    # a 0..2 scale (Q122-style) and a 1..10 scale with a mean of 7.4 -> 7
    assert answer_index([0.1, 0.2, 0.7], (0, 1, 2), "mean") == 2  # mean 1.6 -> 2
    assert answer_index([0] * 5 + [0.6, 0, 0.4, 0, 0], tuple(range(1, 11)), "mean") == 6  # 6*.6+8*.4 = 6.8 -> 7
    with pytest.raises(ValueError, match="answer rule"):
        answer_index([1.0], (1,), "median")


def test_labels_from_synthetic_country_exclude_missing_codes(tmp_path):
    root = write_data_root(tmp_path)
    majority = build_examples("english", data_dir=str(root), rule="majority")
    mean = build_examples("english", data_dir=str(root), rule="mean")
    assert _letters(majority.rows) == {"27": "D", "28": "B"}
    assert _letters(mean.rows) == {"27": "C", "28": "C"}
    assert [r["answer_code"] for r in majority.rows] == [4, 2]
    assert majority.counts["usa: skipped, question without valid answer"] == 1  # Q29
    user = majority.rows[0]["messages"][0]["content"]
    assert user == ("Making my parents proud is a main goal\n\nOptions:\nA. Strongly agree\nB. agree\n"
                    "C. Disagree\nD. Strongly disagree\nAnswer:")
    assert all(r["culture"] == "english" and r["country"] == "usa" for r in majority.rows)


def test_augmented_questions_take_their_seed_label_and_upstream_format(tmp_path):
    root = write_data_root(tmp_path)
    aug = tmp_path / "aug.jsonl"
    aug.write_text("\n".join(json.dumps(r) for r in [
        {"q_id": "27", "q_content": "Making my parents proud is my main aim", "step": "paraphrase", "similarity": 0.9},
        # upstream new_WVQ_100.jsonl rows: only ori_content and q_content
        {"ori_content": "When a mother works for pay, the children suffer",
         "q_content": "Children suffer when their mother has a paid job."},
        {"ori_content": "when a mother works for pay the children suffer!",  # same seed, case/punctuation
         "q_content": "Children suffer when their mother has a paid job"},  # duplicate wording
        {"ori_content": "A sentence that is no seed", "q_content": "Something else entirely"},
        {"q_id": "29", "q_content": "Men are better political leaders"},
        {"q_id": "27", "q_content": "Making my parents proud is a main goal."},  # the seed itself, a full stop added
    ]) + "\n", encoding="utf-8")
    s = build_examples("english", questions_file=str(aug), data_dir=str(root))
    by_text = {r["messages"][0]["content"].split("\n")[0]: r for r in s.rows}
    assert by_text["Making my parents proud is my main aim"]["messages"][1]["content"] == "D"
    assert by_text["Making my parents proud is my main aim"]["step"] == "paraphrase"
    assert by_text["Children suffer when their mother has a paid job."]["messages"][1]["content"] == "B"
    assert by_text["Children suffer when their mother has a paid job."]["step"] == "upstream"
    assert len(s.rows) == 4  # 2 seeds + 2 variants; Q29's seed and variant have no label
    assert s.counts["variant skipped: duplicate wording"] == 1
    assert s.counts["variant skipped: ori_content matches no seed question"] == 1
    assert s.counts["usa: skipped, question without valid answer"] == 2


def test_culturellm_one_tags_each_prompt_with_its_country(data_root):
    s = build_examples("one", data_dir=str(data_root))
    countries = {r["country"] for r in s.rows}
    assert len(countries) == 11 and {r["culture"] for r in s.rows} == set(
        ["arabic", "bengali", "chinese", "english", "german", "korean", "portuguese", "spanish", "turkish"])
    iraq = next(r for r in s.rows if r["country"] == "iraq")
    assert iraq["messages"][0]["content"].startswith("Answer as a typical person from Iraq would answer.\n\n")
    # Q36 is not asked in Iraq: no example, counted
    assert not any(r["country"] == "iraq" and r["q_id"] == "36" for r in s.rows)
    assert s.counts["iraq: skipped, question without valid answer"] == 2  # Q36 and Q226


def test_culture_mapping_and_tasks():
    assert [c.slug for c in countries_of("Arabic")] == ["iraq", "jordan"]
    assert [c.slug for c in countries_of("spanish")] == ["argentina", "mexico"]
    assert len(countries_of("one")) == 11
    assert evaluation_tasks("arabic") == ["culturellm_arabic", "wvs_iraq", "wvs_jordan"]
    assert evaluation_tasks("one")[0] == "culturellm" and "wvs_turkey_persona" in evaluation_tasks("one")
    assert evaluation_tasks("arabic", persona=True) == ["culturellm_arabic", "wvs_iraq_persona", "wvs_jordan_persona"]
    assert "wvs_turkey" in evaluation_tasks("one", persona=False)  # One's rows built with --tag-country false
    with pytest.raises(ValueError, match="unknown culture 'french'"):
        countries_of("french")


def test_bad_question_files_name_line_and_field(tmp_path):
    root = write_data_root(tmp_path)
    questions = load_questions(str(root))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q_id": "27", "q_content": "ok question here"}\n{"q_id": "28"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing field 'q_content'"):
        read_variants(bad, questions)
    bad.write_text('{"q_content": "A question without its seed"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing field 'q_id' and 'ori_content'"):
        read_variants(bad, questions)
    bad.write_text('{"ori_content": "no such seed", "q_content": "x y z"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="no usable question"):
        read_variants(bad, questions)
    # a paraphrase of Q28 filed under Q27 would be trained with Q27's answer
    bad.write_text(json.dumps({"q_id": "27", "ori_content": "When a mother works for pay, the children suffer",
                               "q_content": "Children suffer when their mother has a paid job"}) + "\n",
                   encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: q_id 27, but ori_content is the wording of seed question 28; "
                                         "correct one of the two"):
        read_variants(bad, questions)
    (root / "culturellm" / "WVQ.jsonl").write_text('{"q_id": "27", "q_content": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"WVQ.jsonl:1: missing field\(s\) \['option'\]"):
        build_examples("english", data_dir=str(root))


def test_country_without_survey_data(tmp_path):
    root = write_data_root(tmp_path)
    with pytest.raises(DataRootError, match=r"Missing data file .*Arabic/Iraq.csv"):
        build_examples("arabic", data_dir=str(root))
    csv = root / "culturellm" / "English" / "United States.csv"
    csv.write_text("B_COUNTRY,B_COUNTRY_ALPHA,Q27,Q28,Q29\n840,USA,-1,-2,-4\nAvg,,1,1,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no valid answer to any question for usa"):
        build_examples("english", data_dir=str(root))


def test_cli_data_from_yaml_with_overrides(tmp_path, capsys):
    from trainers.cli import main as cli

    root = write_data_root(tmp_path / "root")
    config = tmp_path / "data.yaml"
    config.write_text(f"culture: english\nrule: majority\ndata_dir: {root}\noutput: {tmp_path / 'a.jsonl'}\n")
    assert cli(["data", "--config", str(config), "--rule", "mean", "--output", str(tmp_path / "b.jsonl")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["messages"][1]["content"] for r in rows] == ["C", "C"] and not (tmp_path / "a.jsonl").exists()
    config.write_text("culture: english\nlearning_rate: 1\n")
    assert cli(["data", "--config", str(config), "--output", str(tmp_path / "c.jsonl")]) == 2
    assert "unknown setting(s) 'learning_rate'" in capsys.readouterr().err
    assert cli(["data", "--culture", "klingon", "--output", str(tmp_path / "d.jsonl"), "--data-dir", str(root)]) == 2
    assert "unknown culture 'klingon'" in capsys.readouterr().err
    config.write_text("culture: english\ninclude_seed_questions: nope\n")
    assert cli(["data", "--config", str(config), "--output", str(tmp_path / "e.jsonl")]) == 2
    assert "include_seed_questions: expected true/false/yes/no/1/0, got 'nope'" in capsys.readouterr().err
    assert not any((tmp_path / f"{x}.jsonl").exists() for x in "cde")


def test_unknown_culture_is_a_config_error(tmp_path):
    from trainers.examples import DataConfig

    with pytest.raises(ValueError, match=r"unknown culture 'french'; choose one of \['arabic', .*\] or 'one'"):
        DataConfig(culture="french", output=str(tmp_path / "x.jsonl"), data_dir=str(tmp_path / "no-root"))
    assert DataConfig(culture="One", output="x").rule == "majority"


def test_data_refuses_to_write_over_any_file_it_read(tmp_path, capsys):
    """The seed bank, the country file and the --questions file are inputs: refused even with --overwrite."""
    from trainers.cli import main as cli

    root = write_data_root(tmp_path / "root")
    aug = tmp_path / "aug.jsonl"
    aug.write_text(json.dumps({"q_id": "27", "q_content": "Making my parents proud is my main aim"}) + "\n",
                   encoding="utf-8")
    read = [root / "culturellm" / "WVQ.jsonl", root / "culturellm" / "English" / "United States.csv", aug]
    before = [p.read_bytes() for p in read]
    for target in read:
        code = cli(["data", "--culture", "english", "--data-dir", str(root), "--questions", str(aug),
                    "--output", str(target), "--overwrite"])
        assert code == 2
        assert f"output {target} is also an input of this run" in capsys.readouterr().err
    assert [p.read_bytes() for p in read] == before
    assert cli(["data", "--culture", "english", "--data-dir", str(root), "--questions", str(aug),
                "--output", str(tmp_path / "ok.jsonl")]) == 0
    assert len((tmp_path / "ok.jsonl").read_text(encoding="utf-8").splitlines()) == 3  # Q27, Q28 seeds + 1 variant


def test_data_write_is_locked_against_a_second_run(tmp_path):
    import os
    import socket

    from culture_tasks.outputs import OutputError

    root = write_data_root(tmp_path / "root")
    examples = build_examples("english", data_dir=str(root))
    out = tmp_path / "ex.jsonl"
    lock = tmp_path / "ex.jsonl.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": "other"}))
    with pytest.raises(OutputError, match=r"ex.jsonl is in use by another run"):
        examples.write(out)
    assert not out.exists()
    lock.unlink()
    examples.write(out)
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2 and not lock.exists()


def test_question_rows_with_unknown_keys_are_refused(tmp_path):
    root = write_data_root(tmp_path)
    questions = load_questions(str(root))
    good = {"q_id": "27", "topic": "SOCIAL VALUES", "q_content": "Making my parents proud is my main aim",
            "ori_content": "Making my parents proud is a main goal", "option": "1. Yes 2. No", "step": "paraphrase",
            "similarity": 0.9, "generator": "g"}  # every key augment and upstream write
    bad = {"q_id": "27", "q_content": "Making my parents proud is my aim", "stepp": "paraphrase", "simlarity": 0.5}
    path = tmp_path / "aug.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"aug.jsonl:2: unknown key\(s\) 'simlarity' \(did you mean 'similarity'\?\), "
                                         r"'stepp' \(did you mean 'step'\?\) in a question row"):
        read_variants(path, questions)
    path.write_text(json.dumps(good) + "\n", encoding="utf-8")
    variants, _ = read_variants(path, questions)
    assert [(v.q_id, v.step, v.similarity, v.generator) for v in variants] == [("27", "paraphrase", 0.9, "g")]


@pytest.mark.parametrize("change, message", [
    ({"q_content": {"text": "How important is family?"}}, "q_content must be text, got {'text': 'How important is family?'}"),
    ({"q_content": 12345}, "q_content must be text, got 12345"),
    ({"ori_content": ["Making my parents proud"]}, "ori_content must be text, got ['Making my parents proud']"),
    ({"step": "paraphrse"}, "step must be one of seed, paraphrase, synonym, upstream, got 'paraphrse'"),
    ({"generator": 5}, "generator must be text, got 5"),
    ({"q_id": True}, "q_id must be the seed question's id (text or a whole number), got True"),
    ({"q_id": 27.5}, "q_id must be the seed question's id (text or a whole number), got 27.5"),
])
def test_question_rows_of_the_wrong_type_are_refused(tmp_path, change, message):
    # a mapping as q_content was trained on as the text "{'text': ...}", a misspelt step kept as provenance
    root = write_data_root(tmp_path)
    questions = load_questions(str(root))
    row = {"q_id": "27", "q_content": "Making my parents proud is my main aim", "step": "paraphrase",
           "generator": "g", **change}
    path = tmp_path / "aug.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        read_variants(path, questions)
    assert str(err.value) == f"{path}:1: {message}"
    row = {"q_id": 27, "q_content": "Making my parents proud is my aim", "step": None, "generator": None}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")  # a whole-number id and nulls are read as before
    assert [(v.q_id, v.step) for v in read_variants(path, questions)[0]] == [("27", "seed")]


def test_mean_rule_rounds_exact_halves_up_whatever_the_float_error():
    """14 respondents 1,6,6,1 on 1..4: mean 35/14 = 2.5 exactly, but the proportions' dot product is
    2.4999999999999996; the documented rule (halves up) gives code 3."""
    codes = (1, 2, 3, 4)
    assert answer_index([1 / 14, 6 / 14, 6 / 14, 1 / 14], codes, "mean") == 2
    assert answer_index([8 / 12, 3 / 12, 0, 1 / 12], codes, "mean") == 1  # 18/12 = 1.5 -> 2
    assert answer_index([9 / 12, 1 / 12, 1 / 12, 1 / 12], codes, "mean") == 1  # 18/12 = 1.5 -> 2
    assert answer_index([51 / 100, 49 / 100, 0, 0], codes, "mean") == 0  # 1.49, below the half -> 1


def test_a_variant_repeating_its_seed_wording_is_counted(tmp_path):
    """new_WVQ_sentence_only.jsonl holds one row that is its seed's own wording: with the seeds
    included it adds no example, and that is counted like any other duplicate."""
    root = write_data_root(tmp_path)
    aug = tmp_path / "aug.jsonl"
    aug.write_text(json.dumps({"ori_content": "Making my parents proud is a main goal",
                               "q_content": "Making my parents proud is a main goal."}) + "\n"
                   + json.dumps({"q_id": "27", "q_content": "Making my parents proud is my main aim"}) + "\n",
                   encoding="utf-8")
    s = build_examples("english", questions_file=str(aug), data_dir=str(root))
    assert len(s.rows) == 3  # seeds Q27, Q28 and one paraphrase
    assert s.counts["variant skipped: same wording as its seed question"] == 1
    without = build_examples("english", questions_file=str(aug), data_dir=str(root), include_seed_questions=False)
    assert len(without.rows) == 2 and "variant skipped: same wording as its seed question" not in without.counts


def test_a_wording_of_another_seed_question_is_dropped_and_counted(tmp_path):
    """A synonym rewrite of Q27 that became Q28's text was kept under Q27: a cross-validation holding Q28 out
    trained on Q28's exact prompt, labelled with Q27's answer. So was a wording given under two seeds. Of five
    rows: one is Q28's wording under Q27, two are one wording under Q27 and Q28; two are kept."""
    root = write_data_root(tmp_path)
    aug = tmp_path / "aug.jsonl"
    aug.write_text("".join(json.dumps(r) + "\n" for r in [
        {"q_id": "27", "q_content": "When a mother works for pay, the children suffer!", "step": "synonym"},
        {"q_id": "27", "q_content": "Pleasing my parents is a goal", "step": "paraphrase"},
        {"q_id": "28", "q_content": "pleasing my parents is a goal.", "step": "paraphrase"},
        {"q_id": "27", "q_content": "Making my parents proud is my main aim", "step": "paraphrase"},
        {"q_id": "28", "q_content": "Children suffer when their mother has a paid job", "step": "paraphrase"},
    ]), encoding="utf-8")
    variants, skipped = read_variants(aug, load_questions(str(root)))
    assert [(v.q_id, v.text) for v in variants] == [("27", "Making my parents proud is my main aim"),
                                                     ("28", "Children suffer when their mother has a paid job")]
    assert skipped == {"wording of another seed question": 1, "same wording under several seed questions": 2}
    s = build_examples("english", questions_file=str(aug), data_dir=str(root))
    assert len(s.rows) == 4  # the seeds Q27, Q28 and the two kept rewrites
    assert s.counts["variant skipped: wording of another seed question"] == 1
    assert s.counts["variant skipped: same wording under several seed questions"] == 2
    prompts = {r["q_id"]: [] for r in s.rows}
    for r in s.rows:
        prompts[r["q_id"]].append(r["messages"][0]["content"].split("\n")[0])
    assert prompts == {"27": ["Making my parents proud is a main goal", "Making my parents proud is my main aim"],
                       "28": ["When a mother works for pay, the children suffer",
                              "Children suffer when their mother has a paid job"]}


def test_every_step_refuses_to_overwrite_its_own_config_file(tmp_path, tiny_model, capsys):
    """The --config file is an input of the run: an --output that is it (or, for a folder, holds
    it) is refused even with --overwrite, and the file is left as it was."""
    from trainers.cli import main as cli

    root = write_data_root(tmp_path / "root")
    examples = tmp_path / "ex.jsonl"
    assert cli(["data", "--culture", "english", "--data-dir", str(root), "--output", str(examples)]) == 0
    config = tmp_path / "data.yaml"
    config.write_text(f"culture: english\ndata_dir: {root}\noutput: {config}\n", encoding="utf-8")
    augment = tmp_path / "augment.yaml"
    augment.write_text(f"generator: stand-in\ndata_dir: {root}\noutput: {augment}\n", encoding="utf-8")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    lora = adapter / "train.yaml"
    lora.write_text(f"model: {tiny_model}\ndata: [{examples}]\noutput: {adapter}\n", encoding="utf-8")
    (adapter / "old.txt").write_text("an earlier run", encoding="utf-8")
    for step, path in (("data", config), ("augment", augment), ("lora", lora), ("kfold", lora)):
        before = path.read_bytes()
        assert cli([step, "--config", str(path), "--overwrite"]) == 2, step
        err = capsys.readouterr().err
        assert str(path) in err and ("is also an input of this run" in err or "holds the input" in err), (step, err)
        assert path.read_bytes() == before, step


def test_a_tied_majority_is_counted_and_named(tmp_path, caplog):
    """Q28 of the synthetic country: 2, 2, 3, 3 -- the label (B, the lower code) is a convention,
    not what the data say, so the tie is counted once per question and named."""
    root = write_data_root(tmp_path)
    majority = build_examples("english", data_dir=str(root), rule="majority")
    assert majority.counts["usa: questions with a tied majority (lower code taken)"] == 1
    assert "usa: the most chosen answer to Q28 is tied; the lower code is taken" in caplog.text
    assert "usa: questions with a tied majority (lower code taken)" not in build_examples(
        "english", data_dir=str(root), rule="mean").counts


def test_data_refuses_an_unfinished_augmentation(tmp_path):
    """An augmentation stopped part-way holds only its finished chunks' wordings: training on it
    would leave the other seed questions' variants out without a word."""
    from tests.test_augment import REPLIES, BagOfWords, StandIn, _config
    from trainers.augment import AugmentError, run_augmentation

    root = write_data_root(tmp_path / "root")
    aug = tmp_path / "aug.jsonl"
    with pytest.raises(KeyboardInterrupt):  # Q27 committed, then stopped
        run_augmentation(_config(tmp_path), StandIn(REPLIES, fail_on_call=3), BagOfWords())
    with pytest.raises(AugmentError, match=r"aug.jsonl: the augmentation writing it is not finished \(1 of its seed "
                                           r"questions done\); finish it with culture-train augment --resume"):
        build_examples("english", questions_file=str(aug), data_dir=str(root))
    run_augmentation(_config(tmp_path, resume=True), StandIn(REPLIES), BagOfWords())
    assert len(build_examples("english", questions_file=str(aug), data_dir=str(root)).rows) == 4


def test_a_seed_bank_naming_a_question_twice_is_refused(tmp_path):
    """Two rows for Q27 gave two Q27 training examples (and, in other wording or options, two
    answers to one question): an error naming both lines."""
    root = write_data_root(tmp_path)
    bank = root / "culturellm" / "WVQ.jsonl"
    lines = bank.read_text(encoding="utf-8").splitlines()
    bank.write_text("\n".join(lines + [lines[0]]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"WVQ.jsonl:4: q_id 27 is given twice \(lines 1 and 4\); keep one"):
        build_examples("english", data_dir=str(root))


@pytest.mark.parametrize("value", ["high", True, [0.9], float("nan"), 1.5, -2])
def test_a_similarity_that_is_no_number_names_its_line(tmp_path, value):
    root = write_data_root(tmp_path)
    path = tmp_path / "aug.jsonl"
    path.write_text(json.dumps({"q_id": "27", "q_content": "Making my parents proud is my aim", "similarity": value})
                    + "\n", encoding="utf-8")  # json writes NaN, and reads it back as a float
    with pytest.raises(ValueError, match=r"aug.jsonl:1: similarity must be a cosine similarity in \[-1, 1\], got"):
        read_variants(path, load_questions(str(root)))
