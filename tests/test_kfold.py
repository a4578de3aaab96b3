"""k-fold held-out evaluation of the LoRA trainer: folds, leakage, lm-eval's question filter, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from culture_tasks import provenance, stats
from culture_tasks.metadata import MetadataError
from culture_tasks.survey.tasks import load_wvs
from tests.lm_eval_helpers import evaluate
from tests.synthetic_wvs import ROWS, write_data_root
from trainers.examples import build_examples
from trainers.kfold import KFoldConfig, assign_folds, fold_rows, run_kfold
from trainers.lora import TrainingError

IDS = [str(q) for q in range(27, 77)]
# paraphrases of the two answered synthetic questions: one names its seed by q_id, one (upstream's form) by text
PARAPHRASES = [
    {"q_id": "27", "q_content": "Making my mother and father proud is a main goal of mine", "step": "paraphrase"},
    {"q_id": "27", "q_content": "A chief aim of mine is to make my parents proud", "step": "synonym"},
    {"ori_content": "When a mother works for pay, the children suffer",
     "q_content": "Children suffer when their mother has a paid job"},
]


def test_folds_are_a_seeded_partition():
    folds = assign_folds(IDS, 5, seed=0)
    assert sorted(q for f in folds for q in f) == sorted(IDS) and [len(f) for f in folds] == [10] * 5
    assert folds == assign_folds(list(reversed(IDS)), 5, seed=0)  # the order ids arrive in does not matter
    assert folds != assign_folds(IDS, 5, seed=1)
    assert sorted(len(f) for f in assign_folds(IDS, 3, seed=0)) == [16, 17, 17]
    # numpy's default_rng(0).permutation(6) is [3 2 5 4 0 1]: dealt round-robin -> positions 3,5,0 and 2,4,1
    assert assign_folds(["1", "2", "3", "4", "5", "6"], 2, seed=0) == [["1", "4", "6"], ["2", "3", "5"]]
    with pytest.raises(TrainingError, match=r"--folds 51: need 2 <= k <= 50"):
        assign_folds(IDS, 51, seed=0)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_data_root(tmp_path_factory.mktemp("wvs_root"))


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory, root):
    folder = tmp_path_factory.mktemp("kfold_data")
    aug = folder / "aug.jsonl"
    aug.write_text("".join(json.dumps(r) + "\n" for r in PARAPHRASES), encoding="utf-8")
    out = folder / "english.jsonl"
    build_examples("english", questions_file=str(aug), data_dir=str(root)).write(out)
    return out


def test_held_out_questions_are_asked_as_the_rows_were(root, tmp_path, capsys):
    """Rows built with the persona line are scored by the _persona tasks; a mix of cultures short of
    all of them, or of asked-with and asked-without, is refused before any model loads."""
    from trainers.cli import main
    from trainers.kfold import _culture, _persona, survey_tasks

    tagged = build_examples("english", data_dir=str(root), tag_country=True).rows
    plain = build_examples("english", data_dir=str(root)).rows
    assert [t for t, _ in survey_tasks(_culture(tagged, ["t"]), _persona(tagged, ["t"]))] == ["wvs_usa_persona"]
    assert [t for t, _ in survey_tasks(_culture(plain, ["p"]), _persona(plain, ["p"]))] == ["wvs_usa"]
    arabic = [{**r, "culture": "arabic", "country": "iraq"} for r in plain]
    cases = {"mixed.jsonl": (tagged[:1] + plain[1:], "some rows ask with the persona line naming the country and "
                                                     "some without"),
             "two.jsonl": (plain + arabic, "rows of the cultures arabic, english; a cross-validation covers one "
                                           "culture or all of them"),
             # the folds are scored as the wvs tasks ask, without a system message
             "system.jsonl": ([{**r, "messages": [{"role": "system", "content": "S."}, *r["messages"]]} for r in plain],
                              "rows start with a system message ('S.'), which the wvs tasks the folds are scored on "
                              "do not ask")}
    for name, (rows, message) in cases.items():
        data = tmp_path / name
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        assert main(["kfold", "--model", str(tmp_path / "none"), "--data", str(data), "--output",
                     str(tmp_path / "kf"), "--data-dir", str(root), "--folds", "2"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "kf").exists()


def test_paraphrases_follow_their_seed_question(rows_file):
    rows = [json.loads(line) for line in rows_file.read_text(encoding="utf-8").splitlines()]
    # Q29 has no valid answer: 2 seeds + 3 paraphrases labelled
    assert sorted((r["q_id"], r["step"]) for r in rows) == [("27", "paraphrase"), ("27", "seed"), ("27", "synonym"),
                                                           ("28", "seed"), ("28", "upstream")]
    kept = fold_rows(rows, ["28"])
    assert [r["q_id"] for r in kept] == ["27", "27", "27"]
    assert not any("mother" in r["messages"][0]["content"] and "paid job" in r["messages"][0]["content"] for r in kept)


def test_wvs_question_filter(root):
    def q_ids(**kw):
        ds = load_wvs(str(root), wvs_country="the United States", wvs_csv="English/United States.csv", **kw)
        return ds["test"]["q_id"]

    assert q_ids() == ["27", "28"]
    assert q_ids(questions=[28]) == ["28"]
    assert q_ids(questions="28, 27") == ["27", "28"]
    assert q_ids(questions=["27", "29"]) == ["27"]  # Q29 is in the bank but unanswered: skipped, as without a filter
    with pytest.raises(MetadataError, match=r"questions: Q99 not in the WVS question bank"):
        q_ids(questions=[27, 99])
    with pytest.raises(MetadataError, match=r"none of the questions \['29'\] has a valid answer"):
        q_ids(questions=[29])
    with pytest.raises(MetadataError, match=r"questions: 'Q27' is not a WVS question id"):
        q_ids(questions=["Q27"])
    with pytest.raises(MetadataError, match="questions is empty"):
        q_ids(questions=[])


@pytest.fixture(scope="module")
def learnable_model(tmp_path_factory):
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("learnable"), initializer_range=0.3)


def _config(model, data, out, root, **kw):
    values = dict(model=str(model), data=[str(data)], output=str(out), folds=2, rank=4, alpha=8, dropout=0.0,
                  learning_rate=2e-2, max_steps=4, batch_size=4, logging_steps=1, save_steps=1000, warmup=0,
                  chat_template=True, seed=0, data_dir=str(root), eval_batch_size=8, eval_device="cpu")
    values.update(kw)
    return KFoldConfig(**values)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, learnable_model, rows_file, root):
    out = tmp_path_factory.mktemp("kfold") / "run"
    return out, run_kfold(_config(learnable_model, rows_file, out, root))


def test_two_fold_run_holds_out_each_question_and_pairs_the_scores(finished, learnable_model, root):
    out, report = finished
    assert json.loads((out / "kfold.json").read_text(encoding="utf-8")) == report
    assert report["environment"]["device"] == "cpu"
    assert provenance.describe(report["environment"])[0] in (out / "kfold.md").read_text(encoding="utf-8")
    folds = report["fold_questions"]
    assert sorted(q for f in folds for q in f) == ["27", "28"] and report["tasks"] == ["wvs_usa"]
    for index, held in enumerate(folds, 1):
        trained = [json.loads(line) for line in (out / f"fold-{index}" / "train.jsonl").read_text().splitlines()]
        # the actual training file: no held-out question, and every row of the other fold
        assert trained and not {r["q_id"] for r in trained} & set(held)
        assert len(trained) == {"27": 3, "28": 2}[next(q for q in ["27", "28"] if q not in held)]
        fold = json.loads((out / f"fold-{index}" / "result.json").read_text(encoding="utf-8"))
        assert list(fold["held_out_scores"]["scores"]["wvs_usa"]) == held
        assert '--metadata \'{"data_dir": "%s", "questions": [%s]}\'' % (root, held[0]) in \
            fold["held_out_scores"]["command"]
    # per question: held-out by the adapter that never saw it, in-sample by the k-1 = 1 adapter trained on it
    per_q = {r["q_id"]: r for r in report["per_question"]}
    assert sorted(per_q) == ["27", "28"] and all(r["in_sample_adapters"] == 1 for r in per_q.values())
    # the held-out score is what plain lm_eval gives the fold's adapter on that question, unfiltered
    fold_of_27 = per_q["27"]["fold"]
    plain = evaluate(learnable_model, ["wvs_usa"], root, chat=True, log_samples=True,
                     peft=out / f"fold-{fold_of_27}" / "adapter")
    doc = next(s for s in plain["samples"]["wvs_usa"] if s["doc"]["q_id"] == "27")
    for metric in ("wvs_majority", "wvs_jsd", "wvs_w1"):
        assert per_q["27"]["held_out"][metric] == pytest.approx(doc[metric], abs=1e-6)
        pooled = report["held_out"][metric]
        base = [per_q[q]["base"][metric] for q in per_q]
        adapter = [per_q[q]["held_out"][metric] for q in per_q]
        assert pooled["base"] == pytest.approx(sum(base) / 2) and pooled["adapter"] == pytest.approx(sum(adapter) / 2)
        assert pooled["diff"] == pytest.approx(pooled["adapter"] - pooled["base"])
        assert pooled["low"] <= pooled["diff"] + 1e-12 and pooled["diff"] <= pooled["high"] + 1e-12
        assert 0.0 <= pooled["p_value"] <= 1.0 and pooled["documents"] == 2
        inside = report["in_sample"][metric]
        assert inside["adapter"] == pytest.approx(sum(per_q[q]["in_sample"][metric] for q in per_q) / 2)
    assert [f["held_out"]["wvs_majority"]["documents"] for f in report["per_fold"]] == [1, 1]
    # one held-out document per fold: its difference, but no interval or p-value to read as significant
    one = report["per_fold"][0]["held_out"]["wvs_jsd"]
    assert one["diff"] == pytest.approx(one["adapter"] - one["base"]) and one["low"] is one["p_value"] is None
    table = (out / "kfold.md").read_text(encoding="utf-8")
    assert "| held-out | WVS majority |" in table and "| in-sample | WVS 1−JSD |" in table
    assert table.count("\n| 1 | Q") == 1 and table.count("\n| 2 | Q") == 1 and " (no interval: one question) |" in table
    assert report["per_task"] == [] and "Per country" not in table
    from trainers.kfold import _diff, _p

    fold = report["per_fold"][0]  # its row: the held-out difference and p, then the in-sample ones
    h, i = fold["held_out"]["wvs_majority"], fold["in_sample"]["wvs_majority"]
    assert f"| {_diff(h)} | – | {_diff(i)} | {_p(i['p_value'])} |\n" in table


def test_resume_skips_finished_folds(finished, learnable_model, rows_file, root, monkeypatch):
    import trainers.kfold
    import trainers.lora

    out, report = finished
    # fold 2 stopped after training, before its scores were written
    (out / "fold-2" / "result.json").unlink()
    (out / "kfold.json").unlink()
    kept = {p: p.stat().st_mtime_ns for p in [out / "fold-1" / "result.json", out / "base.json",
                                              out / "fold-2" / "adapter" / "adapter_model.safetensors"]}

    def no_training(cfg):
        raise AssertionError(f"retrained {cfg.output}")

    monkeypatch.setattr(trainers.lora, "train", no_training)
    scored = []
    real_score = trainers.kfold.score
    monkeypatch.setattr(trainers.kfold, "score", lambda *a: scored.append(a[3]) or real_score(*a))
    resumed = run_kfold(_config(learnable_model, rows_file, out, root, resume=True))
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert scored == [report["fold_questions"][1], report["fold_questions"][0]]  # fold 2 only: held-out, in-sample
    assert resumed == report

    with pytest.raises(TrainingError, match="not empty; pass --resume"):
        run_kfold(_config(learnable_model, rows_file, out, root))
    with pytest.raises(TrainingError, match=r"other settings \(fold_seed: saved 0, given 1\)"):
        run_kfold(_config(learnable_model, rows_file, out, root, resume=True, fold_seed=1))
    # the same paths with other content: another model, other survey answers (compared by content)
    for changed in (learnable_model / "config.json", root / "culturellm" / "English" / "United States.csv"):
        original = changed.read_bytes()
        try:
            changed.write_bytes(original + b"\n")
            key = "model_fingerprint" if changed.name == "config.json" else "survey_sha256"
            with pytest.raises(TrainingError, match=rf"other settings \({key}: saved "):
                run_kfold(_config(learnable_model, rows_file, out, root, resume=True))
        finally:
            changed.write_bytes(original)
    stored = json.loads((out / "kfold_settings.json").read_text())
    assert stored["model_fingerprint"].startswith("sha256-full:")
    assert sorted(stored["survey_sha256"]) == ["culturellm/English/United States.csv", "culturellm/WVQ.jsonl"]
    # a target module the model lacks: refused before the old run is emptied (it was emptied, then fold 1 failed)
    files = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(TrainingError, match=r"--target-modules \['q_prj'\] does not fit"):
        run_kfold(_config(learnable_model, rows_file, out, root, overwrite=True, target_modules=["q_prj"]))
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == files


def test_a_resume_takes_a_finished_fold_adapter_only_if_it_is_the_folds(finished, learnable_model, rows_file, root,
                                                                         tmp_path, monkeypatch):
    """A finished adapter (training.json) in a fold's folder was reused unchecked on --resume: one trained there on
    every row, held-out questions included, while the run was stopped, was scored as fold 2's held-out adapter."""
    import shutil

    import trainers.lora
    from culture_tasks.outputs import file_digest

    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    (out / "fold-2" / "result.json").unlink()
    (out / "kfold.json").unlink()
    monkeypatch.setattr(trainers.lora, "train", lambda cfg: pytest.fail(f"retrained {cfg.output}"))
    summary = out / "fold-2" / "adapter" / "training.json"
    original = json.loads(summary.read_text(encoding="utf-8"))
    fold_rows = file_digest(out / "fold-2" / "train.jsonl")
    assert original["data_sha256"] == [fold_rows]  # kfold's own adapter records the fold's rows
    foreign = {**original, "data_sha256": [file_digest(rows_file)],
               "config": {**original["config"], "learning_rate": 0.1}}
    summary.write_text(json.dumps(foreign), encoding="utf-8")
    with pytest.raises(TrainingError) as err:
        run_kfold(_config(learnable_model, rows_file, out, root, resume=True))
    assert str(err.value) == (
        f"--resume: {summary} is not this fold's adapter: it was trained with other rows or settings (learning_rate: "
        f"saved 0.1, given 0.02; data_sha256: saved ['{file_digest(rows_file)}'], given ['{fold_rows}']); remove "
        f"{summary.parent} and run again with --resume to train the fold, or pass --overwrite")
    assert not (out / "fold-2" / "result.json").exists()
    # a setting lora gained after the adapter was trained is not held against it
    older = {**original, "config": {k: v for k, v in original["config"].items() if k != "weight_decay"}}
    summary.write_text(json.dumps(older), encoding="utf-8")
    resumed = run_kfold(_config(learnable_model, rows_file, out, root, resume=True))
    assert resumed["held_out"] == finished[1]["held_out"] and (out / "fold-2" / "result.json").exists()


def test_a_resume_refuses_a_finished_fold_adapter_whose_weights_are_gone(finished, learnable_model, rows_file, root,
                                                                         tmp_path, monkeypatch):
    """Fold 2 trained (training.json) but not scored, its weights since removed: the resume scored the base model
    and failed in lm-eval's loader ("Repo id must be in the form ..."). It stops before any scoring, naming the
    adapter, what is missing and the fix; nothing in the folder changes."""
    import shutil

    import trainers.kfold

    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    for name in ("fold-2/result.json", "kfold.json", "base.json", "fold-2/adapter/adapter_model.safetensors"):
        (out / name).unlink()
    files = sorted(p.relative_to(out) for p in out.rglob("*"))
    monkeypatch.setattr(trainers.kfold, "score", lambda *a: pytest.fail("scored"))
    adapter = out / "fold-2" / "adapter"
    with pytest.raises(TrainingError) as err:
        run_kfold(_config(learnable_model, rows_file, out, root, resume=True))
    assert str(err.value) == (f"--resume: the finished adapter of fold 2 is not complete (adapter_model.safetensors "
                              f"missing or cut off in {adapter}); remove {adapter} and run again with --resume to train "
                              "the fold again")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == files
    monkeypatch.undo()  # the fix the line names: the fold trained again gives the uninterrupted run's numbers
    shutil.rmtree(adapter)
    assert run_kfold(_config(learnable_model, rows_file, out, root, resume=True))["held_out"] == finished[1]["held_out"]


def test_a_resume_removes_the_temporary_files_of_writes_a_kill_cut_short(finished, learnable_model, rows_file, root,
                                                                          tmp_path, caplog):
    """A run SIGKILLed inside an atomic write leaves that write's temporary file (here kfold.json's, and fold 2's
    result.json's from an earlier kill): the resumed run kept them for good beside the files it wrote. The resume
    removes the temporaries of the files kfold writes, in the output and in each fold folder, naming each, and
    leaves everything else: the folder ends as the uninterrupted run's."""
    import shutil

    out, report = finished
    run = tmp_path / "run"
    shutil.copytree(out, run)
    (run / "kfold.json").unlink()  # killed while writing it
    made = [".kfold.json.k1ll3d00.json", "fold-2/.result.json.ab_cd123.json", "fold-1/.train.jsonl.q0w9e8r7.jsonl"]
    kept = ["fold-2/.result.json.bak", "notes.txt"]
    for name in [*made, *kept]:
        (run / name).write_text('{"fold": ', encoding="utf-8")

    def files(folder):
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))

    caplog.clear()
    assert run_kfold(_config(learnable_model, rows_file, run, root, resume=True)) == report
    assert files(run) == sorted([*files(out), *kept])
    assert sorted(r.getMessage() for r in caplog.records if r.getMessage().startswith("removed ")) == sorted(
        f"removed {Path(name).name} from {(run / name).parent}, left by a run killed while writing it" for name in made)


def test_in_half_precision_the_scoring_batch_and_device_must_match_on_resume(learnable_model, rows_file, root,
                                                                             tmp_path):
    """A resumed bfloat16 run could score its folds at another batch size or on another device than base.json,
    and bf16 scores move with both; float32 scores do not, and there they may change."""
    from culture_tasks.outputs import save_settings
    from trainers.kfold import SETTINGS, _prepare, defining_settings, scoring_text

    out = tmp_path / "run"
    out.mkdir()
    (out / "base.json").write_text("{}")
    for dtype in ("bfloat16", "float32"):
        first = _config(learnable_model, rows_file, out, root, eval_dtype=dtype)
        save_settings(out / SETTINGS, defining_settings(first))
        later = _config(learnable_model, rows_file, out, root, eval_dtype=dtype, eval_batch_size=16, resume=True)
        if dtype == "bfloat16":
            assert (defining_settings(first)["eval_batch_size"], defining_settings(first)["eval_device"]) == (8, "cpu")
            import torch

            assert defining_settings(first)["eval_kernels"]["torch"] == torch.__version__
            # kfold.md and the summary say how the run was scored
            assert scoring_text(defining_settings(first), True) == ("scored in bfloat16 at batch 8 on cpu, through "
                                                                    "the model's chat template")
            with pytest.raises(TrainingError, match=r"other settings \(eval_batch_size: saved 8, given 16\)"):
                _prepare(out, later, defining_settings(later))
        else:
            assert not {"eval_batch_size", "eval_device", "eval_kernels"} & set(defining_settings(first))
            assert scoring_text(defining_settings(first), False) == "scored in float32, without a chat template"
            assert _prepare(out, later, defining_settings(later)) == "resume"


def test_a_resume_removes_the_checkpoints_a_fold_killed_after_its_training_left(learnable_model, rows_file, root,
                                                                                 tmp_path, monkeypatch, caplog):
    """Fold 1 killed after its training.json was written, before its checkpoints/ were removed: the resume
    reuses its training (a finished fold is not trained again) and kept those checkpoints for good. It now
    removes them, with a line, and the run ends as an uninterrupted one: no checkpoints left."""
    import types

    import trainers.lora as lora

    out = tmp_path / "run"
    real = lora.shutil

    def killed(path, *args, **kwargs):
        if Path(path).name == "checkpoints":
            raise KeyboardInterrupt
        return real.rmtree(path, *args, **kwargs)

    monkeypatch.setattr(lora, "shutil", types.SimpleNamespace(rmtree=killed))
    with pytest.raises(KeyboardInterrupt):
        run_kfold(_config(learnable_model, rows_file, out, root, save_steps=2))
    adapter = out / "fold-1" / "adapter"
    assert (adapter / "training.json").is_file() and (adapter / "checkpoints" / "checkpoint-4").is_dir()
    weights = (adapter / "adapter_model.safetensors").read_bytes()
    monkeypatch.setattr(lora, "shutil", real)
    caplog.clear()
    report = run_kfold(_config(learnable_model, rows_file, out, root, save_steps=2, resume=True))
    assert not list(out.rglob("checkpoints"))
    assert (adapter / "adapter_model.safetensors").read_bytes() == weights  # not trained again
    assert [r.getMessage() for r in caplog.records if "removed" in r.getMessage()] == [
        f"{adapter}: removed {adapter / 'checkpoints'}, left by a finished run killed before it removed them"]
    assert report["per_fold"][0]["training"] == {
        k: json.loads((adapter / "training.json").read_text())[k] for k in ("examples", "steps", "train_loss",
                                                                            "seconds")}


def test_cli_checks_before_work(tmp_path, rows_file, capsys):
    from trainers.cli import main

    out = tmp_path / "kf"
    args = ["kfold", "--model", str(tmp_path / "none"), "--data", str(rows_file), "--output", str(out)]
    assert main(args + ["--folds", "1"]) == 2
    assert "culture-train kfold: --folds must be at least 2, got 1" in capsys.readouterr().err
    assert main(args + ["--merge", "true"]) == 2
    assert "--merge: the cross-validation keeps only the fold adapters" in capsys.readouterr().err
    config = tmp_path / "kfold.yaml"
    config.write_text("folds: 3\nfold_sed: 1\n", encoding="utf-8")
    assert main(args + ["--config", str(config)]) == 2
    assert "unknown setting(s) 'fold_sed' (did you mean 'fold_seed'?)" in capsys.readouterr().err
    assert main(args + ["--extra", '{"learning_rate": 1}']) == 2  # the lora settings' check, inherited
    assert ("culture-train kfold: --extra: 'learning_rate' is set by the trainer from --learning-rate; remove it "
            "from --extra and give --learning-rate instead\n") == capsys.readouterr().err
    assert main(args + ["--extra", '{"bogus": 1}']) == 2
    assert "--extra: 'bogus' is not a TrainingArguments parameter" in capsys.readouterr().err
    assert not out.exists()


# --------------------------------------------------------------------------- across cultures


def _report(culture: str, base: list[float], held: list[float], **settings) -> dict:
    """A finished run's kfold.json as `run_kfold` writes it, reduced to what the summary reads; every metric
    gets the same per-question values."""
    from trainers.kfold import METRICS, compare

    docs = {(f"wvs_{culture}", str(27 + i)): i for i in range(len(base))}
    per_q = [{"task": t, "q_id": q, "fold": 1, "base": {m: base[i] for m in METRICS},
              "held_out": {m: held[i] for m in METRICS}, "in_sample": {m: 1.0 for m in METRICS}}
             for (t, q), i in docs.items()]
    scores = {part: {k: p[part] for k, p in zip(docs, per_q)} for part in ("base", "held_out", "in_sample")}
    return {"culture": culture, "tasks": [f"wvs_{culture}"], "documents": len(base), "folds": 5, "chat_template": True,
            "settings": {"model": "m", "rank": 16, "learning_rate": 5e-4, "epochs": 2.0, "max_steps": -1,
                         "batch_size": 16, "seed": 0, "fold_seed": 0, "data_sha256": [f"sha256:{culture}"], **settings},
            "held_out": compare(scores["base"], scores["held_out"], list(docs)),
            "in_sample": compare(scores["base"], scores["in_sample"], list(docs)), "per_question": per_q}


def _write(folder, report):
    folder.mkdir(parents=True)
    (folder / "kfold.json").write_text(json.dumps(report), encoding="utf-8")
    return folder


def test_summary_weights_each_culture_once(tmp_path):
    """Two documents of A move by 1, four of B by 0.25 on average: all cultures together is the mean of the two
    cultures' means, (1 + 0.25) / 2 = 0.625, not the mean over the six documents (0.5); resampling within each
    culture keeps A at 1, so every resample lies in [0.5, 1]."""
    from trainers.kfold import across_cultures, read_report

    a = _write(tmp_path / "a", _report("arabic", [0, 0], [1, 1]))
    b = _write(tmp_path / "b", _report("bengali", [0, 0, 0, 0], [1, 0, 0, 0]))
    summary = across_cultures(dict(read_report(p) for p in (b, a)))
    assert [r["culture"] for r in summary["cultures"]] == ["arabic", "bengali"]
    assert summary["cultures"][1]["held_out"]["wvs_majority"]["diff"] == pytest.approx(0.25)
    together = summary["all"]["held_out"]["wvs_majority"]
    assert together["base"] == 0 and together["adapter"] == pytest.approx(0.625)
    assert together["diff"] == pytest.approx(0.625) and together["documents"] == 6
    assert 0.5 <= together["low"] < together["high"] <= 1.0
    assert summary["all"]["in_sample"]["wvs_majority"]["diff"] == pytest.approx(1.0)  # every in-sample score is 1
    # the held-out share of the in-sample gain: over an in-sample gain of 1 it is the held-out gain, in every
    # resample too (the same within-culture draws), so its interval is the held-out difference's
    shares = [r["held_out_share"] for r in summary["cultures"]]
    assert [x["share"] for x in shares] == pytest.approx([1.0, 0.25])
    assert shares[0]["ci"] == pytest.approx([1.0, 1.0])
    assert summary["all"]["held_out_share"]["share"] == pytest.approx(0.625)
    assert summary["all"]["held_out_share"]["ci"] == pytest.approx([together["low"], together["high"]])
    # the means have intervals too: the base is 0 everywhere, so the adapter's interval is the difference's
    # the means have intervals too: the base is 0 in every document of the 2 + 4 questions, so not [0, 0] but the
    # exact interval of a mean over two cultures of 0 of 2 and 0 of 4 questions: n_eff = 2^2 / (1/2 + 1/4) = 16/3
    assert together["base_ci"] == [0.0, pytest.approx(1 - 0.025 ** (3 / 16))]
    assert together["adapter_ci"] == pytest.approx([together["low"], together["high"]])
    # A: 1 in every document of its 2 questions: [0.025^(1/2), 1], not [1, 1]
    assert summary["cultures"][0]["held_out"]["wvs_majority"]["adapter_ci"] == [pytest.approx(0.025 ** 0.5), 1.0]


def test_held_out_share_has_no_interval_when_many_resamples_have_no_in_sample_gain():
    """Ten questions, base 0; in-sample only the first moves (to 1), held out the first two move. The share is
    0.2 / 0.1 = 2. A resample without the first question has no in-sample gain and no share: (9/10)^10 = 35 % of
    them; the percentile interval of the others (it was printed as a 95 % interval) is withheld and the
    table says why."""
    import numpy as np

    from trainers.kfold import METRICS, _share, held_out_share

    report = _report("german", [0.0] * 10, [1.0, 1.0] + [0.0] * 8)
    for i, q in enumerate(report["per_question"]):
        q["in_sample"] = {m: float(i == 0) for m in METRICS}
    share = held_out_share([report])
    assert share["share"] == pytest.approx(2.0)
    assert share["undefined"] == pytest.approx(0.9 ** 10, abs=0.05)
    assert np.isnan(share["ci"]).all()
    assert _share(share) == (f"2.00 (no interval: the in-sample gain is not positive in {100 * share['undefined']:.1f} "
                             "% of resamples)")
    for q in report["per_question"]:  # every question moves in-sample: no resample lacks the gain
        q["in_sample"] = {m: 1.0 for m in METRICS}
    share = held_out_share([report])
    assert share["undefined"] == 0 and share["share"] == pytest.approx(0.2) and 0 <= share["ci"][0] < share["ci"][1]


def test_a_mean_over_questions_has_its_bootstrap_interval():
    """Two questions scoring 0 and 1: a resample of two is both 0 (1/4), one of each (1/2) or both 1 (1/4),
    so the 95 % percentile interval of the mean is [0, 1]; a question's countries are resampled with it; one
    question has no interval (it resamples to itself)."""
    from trainers.kfold import level_ci

    assert level_ci(["27", "28"], [0.0, 1.0]) == [0.0, 1.0]
    assert level_ci(["27", "27", "28", "28"], [0.0, 0.0, 1.0, 1.0]) == [0.0, 1.0]
    assert level_ci(["27", "28", "29"], [1.0, 1.0, 1.0]) == [1.0, 1.0]  # a 1-W1 of 1 everywhere: no share
    assert level_ci(["27", "27"], [0.0, 1.0]) == [None, None]


def test_a_fold_of_one_question_says_why_its_numbers_have_no_interval():
    """Two questions, one per fold: a fold's base, adapter and difference are over one question, which resamples to
    itself; the table says so beside each number (it showed a bare 0.0 and 100.0 [–, –]), and the pooled row over
    both keeps its intervals: majority 0 and 0 -> the exact [0, 1 - 0.025^(1/2)] = [0.0, 84.2]."""
    from trainers.kfold import compare, markdown

    keys = [("wvs_usa", "27"), ("wvs_usa", "28")]
    base = {k: {"wvs_majority": 0.0, "wvs_jsd": 0.5, "wvs_w1": 0.4} for k in keys}
    held = {keys[0]: {"wvs_majority": 1.0, "wvs_jsd": 0.75, "wvs_w1": 0.5},
            keys[1]: {"wvs_majority": 0.0, "wvs_jsd": 0.5, "wvs_w1": 0.5}}

    def fold(i):
        return {"fold": i, "questions": [keys[i - 1][1]], "training": {"examples": 3, "steps": 4, "train_loss": 1.0},
                "held_out": compare(base, held, [keys[i - 1]]), "in_sample": compare(base, held, [keys[2 - i]])}

    settings = {"model": "/m", "rank": 4, "learning_rate": 0.02, "max_steps": 4, "epochs": 1, "batch_size": 4,
                "seed": 0, "fold_seed": 0}
    report = {"culture": "english", "folds": 2, "data": ["rows.jsonl"], "settings": settings, "tasks": ["wvs_usa"],
              "documents": 2, "held_out": compare(base, held, keys), "in_sample": compare(base, held, keys),
              "per_fold": [fold(1), fold(2)]}
    table = markdown(report)
    none = "(no interval: one question)"
    assert (f"| 1 | Q27 | 1 | 3 | 4 | 1.000 | 0.0 {none} | 100.0 {none} | 100.0 {none} | – | 0.0 {none} | – |\n"
            in table)
    assert (f"| 2 | Q28 | 1 | 3 | 4 | 1.000 | 0.0 {none} | 0.0 {none} | 0.0 {none} | – | 100.0 {none} | – |\n"
            in table)
    assert "| held-out | WVS majority | 0.0 [0.0, 84.2] | 50.0 [0.0, 100.0] | 50.0 [0.0, 100.0] | 1.000 | 2 |" in table
    assert "[–" not in table


def test_a_held_out_share_over_one_question_per_culture_says_why_it_has_no_interval():
    """English's held-out gain 0.5 and German's 0 of in-sample gains 1: the share (0.5 + 0) / 2 / 1 = 0.25; every
    resample draws each culture's one question again, so it has no interval, and the summary says why (it read
    "0.25 (no interval)")."""
    from trainers.kfold import _share, held_out_share

    def question(held):
        return {"q_id": "27", "task": "wvs_usa", "base": {"wvs_majority": 0.0}, "held_out": {"wvs_majority": held},
                "in_sample": {"wvs_majority": 1.0}}

    share = held_out_share([{"culture": "english", "per_question": [question(0.5)]},
                            {"culture": "german", "per_question": [question(0.0)]}])
    assert share["share"] == 0.25 and all(x != x for x in share["ci"])  # NaN
    assert _share(share) == "0.25 (no interval: one question in each culture)"


def test_a_majority_agreement_alike_in_every_document_has_the_exact_interval_of_its_questions():
    """Every resample of ten questions all 0 is 0: the percentile interval [0, 0] would read as certainty (Qwen's
    German folds 2 and 3 showed it). The exact interval of 0 of 10 is [0, 1 - 0.025^(1/10)] = [0, 0.30850]; of
    10 of 10, [0.025^(1/10), 1]. Clusters of unequal size count by their weight c = n_q / N: questions of 2, 1 and
    1 documents, c = (1/2, 1/4, 1/4), n_eff = 1 / (1/4 + 1/16 + 1/16) = 8/3, bound 1 - 0.025^(3/8) = 0.74926. A tie
    everywhere (1/2) keeps the percentile point, as does a metric that is no share."""
    from trainers.kfold import level_ci

    ten = [str(q) for q in range(10)]
    assert level_ci(ten, [0.0] * 10, True) == [0.0, pytest.approx(1 - 0.025 ** 0.1)]
    assert level_ci(ten, [0.0] * 10, True)[1] == pytest.approx(0.30850, abs=5e-6)
    assert level_ci(ten, [1.0] * 10, True) == [pytest.approx(0.025 ** 0.1), 1.0]
    assert level_ci(["27", "27", "28", "29"], [0.0] * 4, True) == [0.0, pytest.approx(1 - 0.025 ** 0.375)]
    assert level_ci(["27", "27", "28", "29"], [0.0] * 4, True)[1] == pytest.approx(0.74926, abs=5e-6)
    assert level_ci(ten, [0.5] * 10, True) == [0.5, 0.5]
    assert level_ci(ten, [0.0] * 10) == [0.0, 0.0]


def test_a_report_written_without_level_intervals_gets_the_ones_a_run_computes(finished):
    """A kfold.json from before the base and adapter means had intervals: reading it recomputes them from its
    per-question scores, equal to what the run stored, and the table shows them."""
    from trainers.kfold import backfill_level_intervals, markdown

    _, report = finished
    old = json.loads(json.dumps(report))
    for part in ("held_out", "in_sample"):
        for r in old[part].values():
            del r["base_ci"], r["adapter_ci"]
    for f in old["per_fold"]:
        for r in f["held_out"].values():
            del r["base_ci"], r["adapter_ci"]
    if old.get("letter_prior"):
        del old["letter_prior"]["prior_ci"], old["letter_prior"]["adapter_ci"]
    assert backfill_level_intervals(old) == report
    r = report["held_out"]["wvs_majority"]
    assert r["base_ci"][0] is not None and r["base_ci"][0] <= r["base"] <= r["base_ci"][1]
    low, high = r["base_ci"]
    assert f"| held-out | WVS majority | {100 * r['base']:.1f} [{100 * low:.1f}, {100 * high:.1f}] |" in markdown(report)


def test_the_tables_name_the_batch_a_step_trained_on(tmp_path):
    """Batch 8 with two accumulation steps trains on 16 rows a step: the header says both, never just "batch 8";
    under two processes the step also counts each process's batch."""
    from trainers.kfold import across_cultures, batch_text, read_report, summary_markdown

    run = _write(tmp_path / "a", _report("arabic", [0, 0], [1, 1], batch_size=8, grad_accum=2, world_size=1))
    header = summary_markdown(across_cultures(dict([read_report(run)])))
    assert "LoRA r 16, lr 0.0005, 2.0 epochs, batch 8 × 2 accumulated (16 per step), seed 0;" in header
    assert batch_text({"batch_size": 16, "grad_accum": 1, "world_size": 1}) == "batch 16"
    assert batch_text({"batch_size": 4, "grad_accum": 2, "world_size": 2}) == (
        "batch 4 × 2 accumulated × 2 processes (16 per step)")
    assert batch_text({"batch_size": 5, "world_size": 2}) == "batch 5 × 2 processes (10 per step)"


def test_the_table_names_the_rows_it_trained_on():
    """A run on the seed wordings alone (a reduced budget) must read as such: the header names the file, its
    digest and how many examples it holds, each counted once though it trains k−1 folds."""
    from trainers.kfold import data_text

    report = {"folds": 3, "data": ["/runs/kdata/one_seeds.jsonl"],
              "settings": {"data_sha256": ["sha256:37b868be8a88e71f976394b9827d446e"]},
              "per_fold": [{"training": {"examples": n}} for n in (350, 349, 357)]}
    assert data_text(report) == "trained on `one_seeds.jsonl` (528 examples, sha256 37b868be8a88…)"
    two = {**report, "folds": 5, "data": ["a/x.jsonl", "b/y.jsonl"],
           "settings": {"data_sha256": ["sha256:aaaaaaaaaaaaaaaa", "sha256:bbbbbbbbbbbbbbbb"]},
           "per_fold": [{"training": {"examples": 120}}] * 5}
    assert data_text(two) == "trained on `x.jsonl`, `y.jsonl` (150 examples, sha256 aaaaaaaaaaaa…, bbbbbbbbbbbb…)"


def test_summary_refuses_runs_that_do_not_compare(tmp_path):
    from trainers.kfold import across_cultures, read_report

    a = _write(tmp_path / "a", _report("arabic", [0, 1], [1, 1]))
    other_lr = _write(tmp_path / "b", _report("bengali", [0, 1], [1, 1], learning_rate=1e-4))
    same_culture = _write(tmp_path / "c", _report("arabic", [0, 1], [1, 1]))
    with pytest.raises(TrainingError, match=r"b/kfold.json: made with other settings than .*a/kfold.json "
                                            r"\(learning_rate: 0.0005 vs 0.0001\)"):
        across_cultures(dict(read_report(p) for p in (a, other_lr)))
    with pytest.raises(TrainingError, match=r"c/kfold.json: culture arabic is also the culture of .*a/kfold.json"):
        across_cultures(dict(read_report(p) for p in (a, same_culture)))
    # a culture built with --tag-country is scored on its _persona tasks: its row and the 'all' row would pool
    # another evaluation with the plain tasks of the others
    tagged = _report("bengali", [0, 1], [1, 1])
    tagged["tasks"] = ["wvs_bengali_persona"]
    tagged = _write(tmp_path / "tagged", tagged)
    with pytest.raises(TrainingError, match=r"tagged/kfold.json: made with other settings than .*a/kfold.json "
                                            r"\(persona line \(--tag-country\): False vs True\)"):
        across_cultures(dict(read_report(p) for p in (a, tagged)))
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "kfold.json").write_text('{"culture": "arabic"}', encoding="utf-8")
    with pytest.raises(TrainingError, match=r"not a finished `culture-train kfold` report \(no settings, held_out"):
        read_report(tmp_path / "unfinished")
    (tmp_path / "summary.md").write_text("| culture |", encoding="utf-8")
    with pytest.raises(TrainingError, match=r"summary.md: not a kfold.json \(Expecting value"):
        read_report(tmp_path / "summary.md")
    cut = json.loads((a / "kfold.json").read_text(encoding="utf-8"))
    cut["letter_prior"] = {"per_document": [1.0]}  # one prior for two documents
    _write(tmp_path / "cut", cut)
    with pytest.raises(TrainingError, match=r"cut/kfold.json: letter_prior.per_document has 1 entries for 2 documents"):
        read_report(tmp_path / "cut")


def test_summary_takes_one_model_folder_named_two_ways_by_its_recorded_content(tmp_path):
    from trainers.kfold import across_cultures, read_report

    a = _write(tmp_path / "a", _report("arabic", [0, 1], [1, 1], model="m", model_fingerprint={"sha256": "x"}))
    b = _write(tmp_path / "b", _report("bengali", [0, 1], [1, 1], model="/abs/m", model_fingerprint={"sha256": "x"}))
    assert [row["culture"] for row in across_cultures(dict(read_report(p) for p in (a, b)))["cultures"]] == [
        "arabic", "bengali"]
    other = _write(tmp_path / "c", _report("bengali", [0, 1], [1, 1], model="m", model_fingerprint={"sha256": "y"}))
    with pytest.raises(TrainingError, match=r"c/kfold.json: made with other settings than .*a/kfold.json "
                                            r"\(model_fingerprint: \{'sha256': 'x'\} vs \{'sha256': 'y'\}\)"):
        across_cultures(dict(read_report(p) for p in (a, other)))
    unrecorded = _write(tmp_path / "d", _report("bengali", [0, 1], [1, 1], model="/abs/m"))
    with pytest.raises(TrainingError, match=r"d/kfold.json: made with other settings than .*a/kfold.json "
                                            r"\(model: 'm' vs '/abs/m'; model_fingerprint: \{'sha256': 'x'\} vs None\)"):
        across_cultures(dict(read_report(p) for p in (a, unrecorded)))


def test_summary_compares_the_data_root_by_the_survey_files_it_recorded(tmp_path):
    from trainers.kfold import across_cultures, read_report

    bank = {"new_WVQ_50.jsonl": "sha256:q"}
    a = _write(tmp_path / "a", _report("arabic", [0, 1], [1, 1], data_dir=None, survey_sha256=bank))
    b = _write(tmp_path / "b", _report("bengali", [0, 1], [1, 1], data_dir="/data", survey_sha256=bank))
    assert len(across_cultures(dict(read_report(p) for p in (a, b)))["cultures"]) == 2
    other_bank = _write(tmp_path / "c", _report("bengali", [0, 1], [1, 1], data_dir="/data",
                                                survey_sha256={"new_WVQ_50.jsonl": "sha256:r"}))
    with pytest.raises(TrainingError, match=r"c/kfold.json: made with other settings than .*a/kfold.json "
                                            r"\(survey file new_WVQ_50.jsonl: 'sha256:q' vs 'sha256:r'\)"):
        across_cultures(dict(read_report(p) for p in (a, other_bank)))
    unrecorded = _write(tmp_path / "d", _report("bengali", [0, 1], [1, 1], data_dir="/data"))
    with pytest.raises(TrainingError, match=r"d/kfold.json: made with other settings than .*a/kfold.json "
                                            r"\(data_dir: None vs '/data'\)"):
        across_cultures(dict(read_report(p) for p in (a, unrecorded)))


def test_summary_compares_runs_of_cultures_with_their_own_survey_files(tmp_path):
    """Each culture's run stores the digests of its own countries' answer files: they differ by culture and
    are not a difference of settings; the question bank both runs were scored on must be the same file."""
    from trainers.kfold import across_cultures, read_report

    def survey(files, bank="sha256:bank"):
        return {"survey_sha256": {"culturellm/WVQ.jsonl": bank, **{f: f"sha256:{f}" for f in files}}}

    arabic = survey(["culturellm/Arabic/Iraq.csv", "culturellm/Arabic/Jordan.csv"])
    a = _write(tmp_path / "a", _report("arabic", [0, 0], [1, 1], **arabic))
    b = _write(tmp_path / "b", _report("bengali", [0, 0], [1, 0], **survey(["culturellm/Bengali/Bangladesh.csv"])))
    summary = across_cultures(dict(read_report(p) for p in (a, b)))
    assert [r["culture"] for r in summary["cultures"]] == ["arabic", "bengali"]
    assert summary["all"]["held_out"]["wvs_majority"]["diff"] == pytest.approx((1 + 0.5) / 2)
    other_bank = _write(tmp_path / "c", _report("bengali", [0, 0], [1, 0], **survey(
        ["culturellm/Bengali/Bangladesh.csv"], bank="sha256:other")))
    with pytest.raises(TrainingError, match=r"c/kfold.json: made with other settings than .*a/kfold.json "
                                            r"\(survey file culturellm/WVQ.jsonl: 'sha256:bank' vs 'sha256:other'\)"):
        across_cultures(dict(read_report(p) for p in (a, other_bank)))


def test_summary_cli_writes_the_table_and_keeps_an_existing_one(tmp_path, finished, capsys):
    """The real two-fold run of this module, summarised alone: its row is the run's own pooled result."""
    from trainers.cli import main

    out, report = finished
    table = tmp_path / "summary.md"
    assert main(["kfold-summary", "--runs", str(out), "--output", str(table)]) == 0
    printed = json.loads(capsys.readouterr().out)
    culture = report["culture"]
    h = report["held_out"]["wvs_majority"]
    assert printed[culture]["held_out"]["wvs_majority"] == {k: h[k] for k in ("base", "base_ci", "adapter", "adapter_ci",
                                                                             "diff", "low", "high", "p_value")}
    assert printed["all"]["held_out"]["wvs_majority"]["diff"] == pytest.approx(h["diff"])
    text = table.read_text(encoding="utf-8")
    low, high = h["base_ci"]
    assert f"| {culture} | {report['documents']} | {100 * h['base']:.1f} [{100 * low:.1f}, {100 * high:.1f}] |" in text
    assert main(["kfold-summary", "--runs", str(out), "--output", str(table)]) == 2
    assert "summary.md already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["kfold-summary", "--runs", str(out / "kfold.json"), "--output", str(out / "kfold.json"),
                 "--overwrite", "true"]) == 2
    assert "is also an input of this run" in capsys.readouterr().err
    assert text == table.read_text(encoding="utf-8") and json.loads((out / "kfold.json").read_text()) == report
    import os
    import socket

    lock = tmp_path / "locked.md.lock"  # a live run writing the same table
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": "other"}))
    assert main(["kfold-summary", "--runs", str(out), "--output", str(tmp_path / "locked.md")]) == 2
    assert "locked.md is in use by another run" in capsys.readouterr().err
    assert not (tmp_path / "locked.md").exists()
    share = report["held_out"]["wvs_majority"]["diff"] / report["in_sample"]["wvs_majority"]["diff"]
    assert f" | {share:.2f} [" in text  # the held-out share with its interval
    prior = report["letter_prior"]  # the real run's prior is paired with the same held-out scores
    assert prior["adapter"] == pytest.approx(report["held_out"]["wvs_majority"]["adapter"])
    assert len(prior["per_document"]) == report["documents"] and len(prior["per_fold"]) == report["folds"]
    assert printed["all"]["held_out"]["wvs_majority"]["diff"] == pytest.approx(h["diff"])
    plow, phigh = prior["prior_ci"]
    assert f"{100 * prior['prior']:.1f} [{100 * plow:.1f}, {100 * phigh:.1f}] | {100 * prior['diff']:.1f} [" in text
    low, high = prior["prior_ci"]
    assert f"agrees with the majority on {100 * prior['prior']:.1f} % [{100 * low:.1f}, {100 * high:.1f}] of the " \
           "held-out documents" in \
        (out / "kfold.md").read_text(encoding="utf-8")


def _row(q: str, letter: str, step: str = "seed", rule: str = "majority") -> dict:
    return {"messages": [{"role": "user", "content": f"Q{q}?"}, {"role": "assistant", "content": letter}],
            "culture": "x", "country": "x", "q_id": q, "step": step, "rule": rule}


def test_letter_prior_answers_each_fold_with_its_most_frequent_training_letter():
    """Fold 1 holds out Q27 and trains on B, B (Q28), A (Q29): it answers B, wrong for Q27 (A). Fold 2 holds out
    Q28 and Q29 and trains on A, A (Q27): it answers A, wrong for Q28 (B), right for Q29 (A). The prior scores
    0, 0, 1; adapters scoring 1, 0, 1 are 1/3 above it."""
    from types import SimpleNamespace

    from trainers.kfold import letter_prior

    rows = [_row("27", "A"), _row("27", "A", "paraphrase"), _row("28", "B"), _row("28", "B", "synonym"), _row("29", "A")]
    tasks = [("wvs_x", SimpleNamespace(slug="x"))]
    per_question = [{"task": "wvs_x", "q_id": q, "held_out": {"wvs_majority": v}} for q, v in
                    (("27", 1.0), ("28", 0.0), ("29", 1.0))]
    prior = letter_prior(rows, [["27"], ["28", "29"]], tasks, per_question)
    assert prior["per_fold"] == [{"fold": 1, "letter": "B", "share": pytest.approx(2 / 3)},
                                 {"fold": 2, "letter": "A", "share": 1.0}]
    assert prior["per_document"] == [0.0, 0.0, 1.0]
    assert prior["prior"] == pytest.approx(1 / 3) and prior["adapter"] == pytest.approx(2 / 3)
    assert prior["diff"] == pytest.approx(1 / 3) and prior["documents"] == 3
    tie = letter_prior([_row("27", "A"), _row("28", "C"), _row("29", "B")], [["27"], ["28", "29"]], tasks, per_question)
    assert [f["letter"] for f in tie["per_fold"]] == ["B", "A"]  # B:1 C:1 -> B; A alone -> A
    assert letter_prior([*rows[:-1], _row("29", "A", rule="mean")], [["27"], ["28", "29"]], tasks, per_question) is None


def test_letter_prior_by_country_answers_each_country_with_its_own_letter():
    """CultureLLM-One names the country in every prompt, so its constant baseline is a letter per fold and
    country. x answers A to every question; y answers C, C, D. Fold 1 holds out Q27: x trained on A, A -> A;
    y on C, D -> C (tie, first letter); both together A, A, C, D -> A. Fold 2 holds out Q28, Q29: x -> A,
    y -> C; together A, C -> A. Per country the prior gets x's three and y's Q27, Q28 right (5 of 6);
    one letter per fold gets only x's three (3 of 6)."""
    from types import SimpleNamespace

    from trainers.kfold import letter_prior

    def row(country, q, letter):
        return {**_row(q, letter), "country": country}

    rows = [row("x", q, "A") for q in ("27", "28", "29")] + [row("y", "27", "C"), row("y", "28", "C"),
                                                             row("y", "29", "D")]
    tasks = [("wvs_x_persona", SimpleNamespace(slug="x")), ("wvs_y_persona", SimpleNamespace(slug="y"))]
    docs = [(t, q) for q in ("27", "28", "29") for t in ("wvs_x_persona", "wvs_y_persona")]
    per_question = [{"task": t, "q_id": q, "held_out": {"wvs_majority": 1.0}} for t, q in docs]
    folds = [["27"], ["28", "29"]]
    by_country = letter_prior(rows, folds, tasks, per_question, by_country=True)
    assert [(f["fold"], f["country"], f["letter"]) for f in by_country["per_fold"]] == \
        [(1, "x", "A"), (1, "y", "C"), (2, "x", "A"), (2, "y", "C")]
    assert by_country["per_document"] == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0] and by_country["by"] == "fold and country"
    assert by_country["prior"] == pytest.approx(5 / 6) and by_country["diff"] == pytest.approx(1 / 6)
    pooled = letter_prior(rows, folds, tasks, per_question)
    assert [f["letter"] for f in pooled["per_fold"]] == ["A", "A"] and pooled["by"] == "fold"
    assert pooled["per_document"] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]


# Iraq: Q27 1,1,1,2 -> A; Q28 1,1,2,4 -> A. Every other country has the usual answers: Q27 D, Q28 B.
IRAQ_ROWS = [(1, 1, -1), (1, 1, -1), (1, 2, -1), (2, 4, -1)]


def test_culturellm_one_run_scores_every_country_with_its_persona_task(tmp_path, learnable_model):
    """CultureLLM-One: 11 countries x 2 answered questions = 22 documents, scored with the persona tasks
    the adapters were trained for; the letter prior is per country (see the hand count below)."""
    from trainers.cultures import countries_of

    countries = countries_of("one")
    root = tmp_path / "root"
    for c in countries:
        write_data_root(root, c.wvs_csv, rows=IRAQ_ROWS if c.slug == "iraq" else ROWS)
    aug = tmp_path / "aug.jsonl"
    aug.write_text("".join(json.dumps(r) + "\n" for r in PARAPHRASES), encoding="utf-8")
    data = tmp_path / "one.jsonl"
    build_examples("one", questions_file=str(aug), data_dir=str(root)).write(data)
    out = tmp_path / "run"
    report = run_kfold(_config(learnable_model, data, out, root))

    tasks = [f"wvs_{c.slug}_persona" for c in countries]
    assert report["culture"] == "one" and report["tasks"] == tasks and report["documents"] == 22
    assert sorted((d["task"], d["q_id"]) for d in report["per_question"]) == sorted(
        (t, q) for t in tasks for q in ("27", "28"))
    for index, held in enumerate(report["fold_questions"], 1):
        trained = [json.loads(line) for line in (out / f"fold-{index}" / "train.jsonl").read_text().splitlines()]
        assert {r["country"] for r in trained} == {c.slug for c in countries}
        assert not {r["q_id"] for r in trained} & set(held)
    # per country: the fold holding out Q27 trained on Q28 (B; Iraq A), the other on Q27 (D; Iraq A), so only
    # Iraq's two documents are right (2 of 22); one letter per fold (B, then D) would get none
    prior = report["letter_prior"]
    assert prior["by"] == "fold and country" and prior["prior"] == pytest.approx(2 / 22)
    assert [d["task"] for d, v in zip(report["per_question"], prior["per_document"]) if v] == ["wvs_iraq_persona"] * 2
    # Iraq's held-out score is what plain lm_eval gives that fold's adapter on the persona task
    iraq = next(d for d in report["per_question"] if d["task"] == "wvs_iraq_persona" and d["q_id"] == "27")
    plain = evaluate(learnable_model, ["wvs_iraq_persona"], root, chat=True, log_samples=True,
                     peft=out / f"fold-{iraq['fold']}" / "adapter")
    doc = next(s for s in plain["samples"]["wvs_iraq_persona"] if s["doc"]["q_id"] == "27")
    assert iraq["held_out"]["wvs_jsd"] == pytest.approx(doc["wvs_jsd"], abs=1e-6)
    # each country on its own: Iraq's documents are the two the prior gets right
    assert [r["task"] for r in report["per_task"]] == tasks
    by_task = {r["task"]: r for r in report["per_task"]}
    iraq_docs = [d for d in report["per_question"] if d["task"] == "wvs_iraq_persona"]
    assert by_task["wvs_iraq_persona"]["held_out"]["wvs_majority"]["adapter"] == pytest.approx(
        sum(d["held_out"]["wvs_majority"] for d in iraq_docs) / 2)
    assert by_task["wvs_iraq_persona"]["held_out"]["wvs_majority"]["documents"] == 2
    assert prior["per_task"]["wvs_iraq_persona"]["prior"] == 1.0 and prior["per_task"]["wvs_usa_persona"]["prior"] == 0.0
    table = (out / "kfold.md").read_text(encoding="utf-8")
    assert "answered with its country's (in its fold) most frequent" in table
    iraq_line = next(line for line in table.splitlines() if line.startswith("| `wvs_iraq_persona` | 2 |"))
    cells = [c.strip() for c in iraq_line.strip("|").split("|")]
    held_iraq = by_task["wvs_iraq_persona"]["held_out"]["wvs_majority"]["adapter"]
    assert cells[7] == "100.0 [15.8, 100.0]" and float(cells[8].split(" [")[0]) == pytest.approx(100 * (held_iraq - 1.0), abs=0.05)


def _two_countries(report: dict) -> dict:
    """``report`` as a culture with two countries that score the same on every question (Iraq and Jordan,
    asked the same prompt without the persona line, give the same answer): each document twice."""
    from trainers.kfold import compare

    per_q = [{**q, "task": t} for q in report["per_question"] for t in ("wvs_iraq", "wvs_jordan")]
    scores = {part: {(q["task"], q["q_id"]): q[part] for q in per_q} for part in ("base", "held_out", "in_sample")}
    docs = list(scores["base"])
    return {**report, "tasks": ["wvs_iraq", "wvs_jordan"], "documents": len(per_q), "per_question": per_q,
            "held_out": compare(scores["base"], scores["held_out"], docs),
            "in_sample": compare(scores["base"], scores["in_sample"], docs)}


def test_countries_of_a_question_are_resampled_together(tmp_path):
    """Duplicating every document into a second country adds no evidence: pooled over questions, the
    intervals and p-values are those of one country, bit for bit (the held-out share and the letter prior
    too, and all cultures together); only the number of documents doubles. Resampling the 24 documents as
    independent would narrow the interval and shrink p."""
    from trainers.kfold import across_cultures, prior_comparison, read_report

    base = [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    held = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    one = _report("arabic", base, held)
    two = _two_countries(one)
    assert two["documents"] == 24 and two["held_out"]["wvs_majority"]["documents"] == 24
    for part in ("held_out", "in_sample"):
        for m, r in one[part].items():
            assert {**two[part][m], "documents": 12} == r
    h = one["held_out"]["wvs_majority"]
    assert h["diff"] == pytest.approx(5 / 12) and h["low"] < h["high"]
    independent = stats.paired_bootstrap(stats.mean, base + base, held + held)
    assert independent["high"] - independent["low"] < h["high"] - h["low"]
    assert independent["p_value"] < h["p_value"]
    prior = [1.0 - x for x in base]  # a constant letter right where the base model is wrong
    assert prior_comparison(two["per_question"], [x for x in prior for _ in range(2)]) == \
        {**prior_comparison(one["per_question"], prior), "documents": 24}
    other = _write(tmp_path / "b", _report("bengali", [0.0, 0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 1.0, 0.0]))
    single = across_cultures(dict(read_report(p) for p in (_write(tmp_path / "a1", one), other)))
    double = across_cultures(dict(read_report(p) for p in (_write(tmp_path / "a2", two), other)))
    assert double["cultures"][0]["held_out_share"] == single["cultures"][0]["held_out_share"]
    assert double["all"]["held_out_share"] == single["all"]["held_out_share"]
    for part in ("held_out", "in_sample"):
        for m, r in single["all"][part].items():
            assert {**double["all"][part][m], "documents": r["documents"]} == r
    assert double["all"]["held_out"]["wvs_majority"]["documents"] == 29


# Jordan: Q27 2,2,2,4 -> B; Q28 2,2,3,4 -> B (Iraq answers A to both: IRAQ_ROWS)
JORDAN_ROWS = [(2, 2, -1), (2, 2, -1), (2, 3, -1), (4, 4, -1)]


@pytest.mark.parametrize("culture, tag, by, prior", [("arabic", True, "fold and country", 1.0),
                                                    ("arabic", False, "fold", 0.5), ("one", False, "fold", 0.0)])
def test_letter_prior_is_per_country_exactly_when_the_prompts_name_the_country(tmp_path, tiny_model, monkeypatch,
                                                                              culture, tag, by, prior):
    """The adapters are stubbed: only the prior is checked. Arabic: Iraq answers A, Jordan B, each question with 3
    (Q27) or 2 (Q28) rows. Named in the prompt, each country's letter can be learnt: Iraq A, Jordan B, right on
    all 4 held-out documents. Not named, the two countries' prompts are the same and a constant answer is one
    letter per fold: A and B tie, A is taken, right for Iraq only (2 of 4). CultureLLM-One without the persona
    line: Iraq A, every other country D (Q27) and B (Q28); holding out Q27 the fold's letter is B, holding out
    Q28 it is D: no held-out document right (one letter per country would get Iraq's two)."""
    from trainers.cultures import countries_of

    root = tmp_path / "root"
    special = {"iraq": IRAQ_ROWS, "jordan": JORDAN_ROWS if culture == "arabic" else ROWS}
    for c in countries_of(culture):
        write_data_root(root, c.wvs_csv, rows=special.get(c.slug, ROWS))
    aug = tmp_path / "aug.jsonl"
    aug.write_text("".join(json.dumps(r) + "\n" for r in PARAPHRASES), encoding="utf-8")
    data = tmp_path / "rows.jsonl"
    build_examples(culture, questions_file=str(aug), data_dir=str(root), tag_country=tag).write(data)

    report = _kfold_without_training(monkeypatch, tiny_model, data, tmp_path / "run", root)
    assert all(t.endswith("_persona") == tag for t in report["tasks"])
    assert report["letter_prior"]["by"] == by and report["letter_prior"]["prior"] == pytest.approx(prior)


def test_a_fold_left_without_training_rows_is_refused_before_any_work(tmp_path, tiny_model, root, monkeypatch):
    """Rows of Q27 only (the data root's USA answered Q27 and Q28): the fold that holds out Q27 would train on
    nothing. It was found after the base model was scored and the other fold trained; now at once."""
    import trainers.kfold

    rows = [r for r in build_examples("english", data_dir=str(root)).rows if r["q_id"] == "27"]
    data = tmp_path / "q27.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    monkeypatch.setattr(trainers.kfold, "score", lambda *a: pytest.fail("scored before the folds were checked"))
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"^fold 1 \(held out: Q27\) has no training row: every row of "
                                            rf"{data} is of one of these questions; build rows for more"):
        run_kfold(_config(tiny_model, data, out, root))
    assert not out.exists()


def test_an_overwrite_of_the_data_root_is_refused_before_any_work(tmp_path, tiny_model, rows_file, monkeypatch):
    """The data root was no input of the run: ``--output <data root> --overwrite`` set the whole root aside (to
    delete it once the run finished) and then scored the base model on the data it had just moved away."""
    import trainers.kfold

    root = write_data_root(tmp_path / "root")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    monkeypatch.setattr(trainers.kfold, "score", lambda *a: pytest.fail("scored with the data root set aside"))
    with pytest.raises(TrainingError, match=rf"^output {root} is also an input of this run; writing it would "
                                            "destroy the input, choose another --output$"):
        run_kfold(_config(tiny_model, rows_file, root, root, overwrite=True))
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


@pytest.mark.parametrize("flag, value, message", [
    # the fold training's set_seed refused it after the base model was scored and base.json written
    ("--seed", "-1", "--seed must be a whole number from 0 to 4294967295, got -1"),
    # numpy refused it when the folds were dealt: "expected non-negative integer"
    ("--fold-seed", "-1", "--fold-seed must be a non-negative whole number, got -1"),
])
def test_a_seed_out_of_range_is_refused_before_the_base_model_is_scored(tmp_path, tiny_model, rows_file, root,
                                                                          monkeypatch, capsys, flag, value, message):
    import trainers.kfold
    from trainers.cli import main

    monkeypatch.setattr(trainers.kfold, "score", lambda *a: pytest.fail("scored before the seed was checked"))
    out = tmp_path / "run"
    assert main(["kfold", "--model", str(tiny_model), "--data", str(rows_file), "--output", str(out), "--data-dir",
                 str(root), "--max-steps", "1", flag, value]) == 2
    assert capsys.readouterr().err == f"culture-train kfold: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize("tag", [False, True])
def test_a_row_asking_another_seed_question_s_wording_is_refused_before_any_work(tmp_path, tiny_model, root,
                                                                                   monkeypatch, tag):
    """A row of Q27 worded as seed question Q28 (a synonym rewrite that became Q28's text) stayed in the training
    of the fold that holds Q28 out (the folds split by q_id): its adapter was scored on a prompt it was trained on.
    So did a wording given under Q27 and Q28. Both are refused, naming the line, with or without the persona line."""
    import trainers.kfold
    from culture_tasks.survey.tasks import survey_prompt

    rows = build_examples("english", data_dir=str(root), tag_country=tag).rows  # line 1: Q27, line 2: Q28
    persona = "the United States" if tag else None

    def worded(row, text):
        prompt = survey_prompt(text, ["Strongly agree", "agree", "Disagree", "Strongly disagree"], persona)
        return {**row, "step": "synonym", "messages": [{"role": "user", "content": prompt}, row["messages"][1]]}

    monkeypatch.setattr(trainers.kfold, "score", lambda *a: pytest.fail("scored before the wordings were checked"))
    data, out = tmp_path / "rows.jsonl", tmp_path / "run"
    leak = worded(rows[0], "When a mother works for pay, the children suffer.")
    assert leak in fold_rows([*rows, leak], ["28"])  # what the folds alone let through
    data.write_text("".join(json.dumps(r) + "\n" for r in [*rows, leak]), encoding="utf-8")
    with pytest.raises(TrainingError) as err:
        run_kfold(_config(tiny_model, data, out, root))
    assert str(err.value) == (f"{data}:3: a row of Q27 asks seed question Q28's wording, so the fold holding Q28 out "
                              "would train on its prompt; build the rows again with `culture-train data` (it drops "
                              "such wordings, counted), or remove the row")
    shared = [worded(rows[0], "Pleasing my parents is a goal"), worded(rows[1], "pleasing my parents is a goal!")]
    data.write_text("".join(json.dumps(r) + "\n" for r in [*rows, *shared]), encoding="utf-8")
    with pytest.raises(TrainingError, match=rf"^{data}:4: a row of Q28 asks the wording of a row of Q27 \({data}:3\), "
                                            "so the fold holding one of them out would train on it; build the rows"):
        run_kfold(_config(tiny_model, data, out, root))
    assert not out.exists()


def test_summary_refuses_a_culturellm_one_run_beside_per_culture_runs(tmp_path):
    """A CultureLLM-One run scores every culture's countries with one model: beside per-culture runs, the
    "all" row would count those countries twice, under two models. Alone, it is summarised."""
    from trainers.kfold import across_cultures, read_report

    a = _write(tmp_path / "a", _report("arabic", [0, 0], [1, 1]))
    one = _write(tmp_path / "one", _report("one", [0, 0], [1, 0]))
    with pytest.raises(TrainingError, match=r"one/kfold.json: a CultureLLM-One run \(culture one\) covers every "
                                            r"culture; summarise it alone, or leave it out"):
        across_cultures(dict(read_report(p) for p in (a, one)))
    assert across_cultures(dict([read_report(one)]))["all"]["held_out"]["wvs_majority"]["diff"] == pytest.approx(0.5)


def test_a_culture_named_in_another_case_is_one_culture(tmp_path, root):
    """Rows naming "English" are of the english culture, as `countries_of` reads the name: the run was recorded
    under "English", which the summary took beside an english run as a second culture, counting english twice in
    its "all" row. A report written so before is read as english too."""
    from trainers.kfold import _culture, across_cultures, read_report

    plain = build_examples("english", data_dir=str(root)).rows
    assert _culture([{**r, "culture": "English"} for r in plain], ["t"]) == "english"
    assert _culture([{**plain[0], "culture": " English"}, *plain[1:]], ["t"]) == "english"  # two spellings, one culture
    a = _write(tmp_path / "a", _report("english", [0, 0], [1, 1]))
    b = _write(tmp_path / "b", _report("English", [0, 0], [1, 0]))
    with pytest.raises(TrainingError) as err:
        across_cultures(dict(read_report(p) for p in (a, b)))
    assert str(err.value) == (f"{b / 'kfold.json'}: culture english is also the culture of {a / 'kfold.json'}; "
                              "give one run per culture")
    one = _write(tmp_path / "one", _report("One", [0, 0], [1, 0]))
    with pytest.raises(TrainingError) as err:
        across_cultures(dict(read_report(p) for p in (a, one)))
    assert str(err.value) == (f"{one / 'kfold.json'}: a CultureLLM-One run (culture one) covers every culture; "
                              "summarise it alone, or leave it out")


def test_kfold_help_describes_the_lora_settings_it_changes():
    """--merge and --keep-checkpoints come from the lora command; their help there (a merged model in
    <output>/merged, <output>/checkpoints kept) is not what kfold does with them."""
    from trainers.cli import parser

    text = " ".join(parser("kfold").format_help().split())
    assert "--keep-checkpoints [KEEP_CHECKPOINTS] keep each fold's checkpoints (fold-<i>/adapter/checkpoints)" in text
    assert "--merge [MERGE] not available here (an error): the cross-validation keeps only the fold adapters" in text
    assert "<output>/merged" not in text


def test_a_fold_whose_training_diverges_stops_the_run(tmp_path, tiny_model, rows_file, root):
    """At learning rate 1e3 the first fold's adapter turns to NaN: the run stops there, naming the fold's
    adapter folder, with no adapter, training.json, result or report that would read as finished."""
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=rf"^{out / 'fold-1' / 'adapter'}: the training diverged \(.*\) and no "
                                            r"adapter was written; train again with a lower --learning-rate "
                                            r"\(this run: 1000\)"):
        run_kfold(_config(tiny_model, rows_file, out, root, learning_rate=1e3, max_steps=5))
    fold = out / "fold-1"
    assert not any(p.exists() for p in (fold / "adapter" / "training.json", fold / "adapter" / "adapter_model.safetensors",
                                        fold / "result.json", out / "fold-2", out / "kfold.json", out / "kfold.md"))


def test_letter_prior_scores_a_tied_majority_as_wvs_majority_agreement_does(tmp_path, tiny_model, monkeypatch):
    """USA: Q27 3,3,3,1 -> C; Q28 2,2,3,3: B and C tie (the rows are labelled B, the lower code). The fold
    holding out Q28 trains on Q27's rows and answers C, one of Q28's two most chosen answers: WVS majority
    agreement counts that as agreeing, so the prior does too (1); the fold holding out Q27 answers B, wrong
    for Q27 (0). Prior 1/2; scored against the rows' label B it read 0."""
    root = write_data_root(tmp_path / "root", rows=[(3, 2, -1), (3, 2, -1), (3, 3, -1), (1, 3, -1)])
    data = tmp_path / "rows.jsonl"
    build_examples("english", data_dir=str(root)).write(data)

    report = _kfold_without_training(monkeypatch, tiny_model, data, tmp_path / "run", root)
    prior = report["letter_prior"]
    letters = {q: f["letter"] for f in prior["per_fold"] for q in report["fold_questions"][f["fold"] - 1]}
    assert letters == {"27": "B", "28": "C"}
    assert prior["per_document"] == [0.0, 1.0] and prior["prior"] == pytest.approx(0.5)


def _kfold_without_training(monkeypatch, tiny_model, data, run, root, train_fold=None, **kw):
    """run_kfold with every fold's training skipped (or ``train_fold`` instead) and every held-out metric 1.0: what
    is left is the folds and the letter prior."""
    import trainers.kfold

    def fake_score(cfg, adapter, tasks, questions, chat):
        ids = questions or ["27", "28"]
        return {"scores": {t: {q: {m: 1.0 for m in trainers.kfold.METRICS} for q in ids} for t in tasks},
                "lm_eval": {}, "command": "lm_eval"}

    monkeypatch.setattr(trainers.kfold, "score", fake_score)
    monkeypatch.setattr(trainers.kfold, "_train_fold",
                        train_fold or (lambda *a: {"examples": 1, "steps": 1, "train_loss": 0.0, "seconds": 0.0}))
    return run_kfold(_config(tiny_model, data, run, root, **kw))


def test_a_second_run_into_a_fold_folder_stops_at_the_lock_while_kfold_runs(tmp_path, tiny_model, rows_file, root,
                                                                            monkeypatch, capsys):
    """kfold locked its output only: while fold 1 trained, `culture-train lora --output <out>/fold-2` wrote its adapter
    into fold 2's folder (rc 0), and one into fold-2/adapter was then taken for fold 2's own training. Every fold
    folder is now locked for the whole run, as a several-country alignment locks its country folders: the second run
    stops with the lock's line (fold-2/adapter: tests/test_outputs.py, a lock inside a locked folder). A run already
    holding a fold folder stops a --resume before any work; --overwrite empties the fold folders and keeps their
    locks."""
    import os
    import socket

    from trainers.cli import main

    out = tmp_path / "run"
    pid, host = os.getpid(), socket.gethostname()
    locks, refused, found = [], [], {}

    def fold(cfg, folder, rows):
        locks.append({p.relative_to(out).as_posix(): json.loads(p.read_text())["pid"] for p in out.rglob(".lock")})
        found[folder.name] = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else None
        if folder.name == "fold-1" and not refused:
            capsys.readouterr()  # kfold's progress bar
            assert main(["lora", "--model", str(tiny_model), "--data", str(rows_file), "--output", str(out / "fold-2"),
                         "--max-steps", "1"]) == 2
            refused.append(capsys.readouterr().err)
        return {"examples": 1, "steps": 1, "train_loss": 0.0, "seconds": 0.0}

    _kfold_without_training(monkeypatch, tiny_model, rows_file, out, root, train_fold=fold)
    assert locks == [{".lock": pid, "fold-1/.lock": pid, "fold-2/.lock": pid}] * 2
    assert refused == [f"culture-train lora: {out / 'fold-2'} is in use by another run (process {pid} on host {host}, "
                       f"lock file {out / 'fold-2' / '.lock'}); wait for it to finish, or delete the lock file if that "
                       "run is gone\n"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.parent != out) == [
        "fold-1/result.json", "fold-2/result.json"]

    (out / "fold-2" / "result.json").unlink()  # fold 2 to do on --resume, and a lora run into fold-2 holds it
    (out / "fold-2" / ".lock").write_text(json.dumps({"pid": pid, "host": host, "token": "other"}))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(TrainingError) as err:
        run_kfold(_config(tiny_model, rows_file, out, root, resume=True))
    assert str(err.value) == (f"{out / 'fold-2'} is in use by another run (process {pid} on host {host}, lock file "
                              f"{out / 'fold-2' / '.lock'}); wait for it to finish, or delete the lock file if that run "
                              "is gone")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    (out / "fold-2" / ".lock").unlink()
    found.clear()
    run_kfold(_config(tiny_model, rows_file, out, root, overwrite=True))
    assert found == {"fold-1": [".lock"], "fold-2": [".lock"]}
    assert not list(tmp_path.rglob("*.replaced")) and not list(out.rglob(".lock"))


def _evaluate_with_nan(bad_when):
    """lm_eval.simple_evaluate as the scoring calls it, every metric 0.5 on Q27 and Q28, except wvs_jsd of Q28,
    NaN where ``bad_when(model_args)`` (a model whose log-likelihoods overflowed)."""
    from trainers.kfold import METRICS

    def evaluate(model, model_args, tasks, **kw):
        nan = bad_when(model_args)
        samples = {t: [{"doc": {"q_id": q}, **{m: float("nan") if nan and (q, m) == ("28", "wvs_jsd") else 0.5
                                              for m in METRICS}} for q in ("27", "28")] for t in tasks}
        return {"samples": samples, "results": {t: {} for t in tasks}}
    return evaluate


def test_scores_that_are_not_finite_stop_the_run_before_they_are_written(tmp_path, tiny_model, rows_file, root,
                                                                          monkeypatch, caplog):
    """A NaN score was saved to base.json (or a fold's result.json) and the run finished with "–" cells. Now it
    stops, naming the base model or the fold's adapter, the metric and its count (1 of the 2 questions), and
    the fix; --eval-dtype float16 also gives the half-precision warning the other commands give."""
    import lm_eval

    import trainers.kfold
    from culture_tasks.cli_args import HALF_PRECISION_NOTE

    monkeypatch.setattr(trainers.kfold, "_train_fold",
                        lambda *a: {"examples": 1, "steps": 1, "train_loss": 0.0, "seconds": 0.0})
    monkeypatch.setattr(lm_eval, "simple_evaluate", _evaluate_with_nan(lambda args: "peft=" not in args))
    out = tmp_path / "base-nan"
    with pytest.raises(TrainingError) as err:
        run_kfold(_config(tiny_model, rows_file, out, root, eval_dtype="float16"))
    assert str(err.value) == (
        f"the base model {tiny_model} gives a NaN or infinite wvs_jsd on 1 of 2 questions of wvs_usa in --eval-dtype "
        "float16, so its scores would be NaN; they are not written: run again with --eval-dtype float32 and "
        "--overwrite (it may overflow in float16)")
    assert not (out / "base.json").exists()
    note = HALF_PRECISION_NOTE.format(flag="--eval-dtype", dtype="float16")  # the other commands' warning, this flag
    assert [r.getMessage() for r in caplog.records if r.getMessage() == note] == [note]
    assert note.startswith("--eval-dtype float16: scores carry half-precision rounding")

    caplog.clear()
    monkeypatch.setattr(lm_eval, "simple_evaluate", _evaluate_with_nan(lambda args: "peft=" in args))
    out = tmp_path / "adapter-nan"
    with pytest.raises(TrainingError) as err:
        run_kfold(_config(tiny_model, rows_file, out, root))
    adapter = out / "fold-1" / "adapter"
    assert str(err.value) == (
        f"the adapter {adapter} gives a NaN or infinite wvs_jsd on 1 of 2 questions of wvs_usa in --eval-dtype "
        f"float32, so its scores would be NaN; they are not written: check its weights (a diverged training?): "
        f"remove {adapter} and run again with --resume to train the fold again")
    assert (out / "base.json").is_file() and not (out / "fold-1" / "result.json").exists()
    assert not (out / "kfold.json").exists() and "half-precision" not in caplog.text


@pytest.mark.parametrize("q_id", ["Q27", 27.0, True, " 27"])
def test_a_q_id_that_is_no_question_number_names_its_line(tmp_path, rows_file, root, q_id):
    """sorted(key=int) over the rows' q_ids failed with "invalid literal for int()"; now the file, line and
    field, before any model is read (there is none here). A q_id written as a JSON number (27) is read as "27"."""
    from trainers.kfold import check_q_ids

    rows = [json.loads(line) for line in rows_file.read_text(encoding="utf-8").splitlines()]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({**r, "q_id": q_id} if i == 1 else r) + "\n" for i, r in enumerate(rows)),
                    encoding="utf-8")
    with pytest.raises(TrainingError) as err:
        run_kfold(_config(tmp_path / "none", data, tmp_path / "run", root))
    assert str(err.value) == (
        f"{data}:2: field 'q_id' is {json.dumps(q_id)}; expected the number of a WVS question, such as \"27\" (as "
        "`culture-train data` writes it): fix the row, or build the file again with `culture-train data`")
    assert not (tmp_path / "run").exists()
    data.write_text("".join(json.dumps({**r, "q_id": int(r["q_id"])}) + "\n" for r in rows), encoding="utf-8")
    check_q_ids([str(data)])


def test_the_recorded_command_names_the_data_root_taken_from_the_environment(tmp_path, rows_file, root, monkeypatch):
    """Without --data-dir the folds are scored on $CULTURE_DATA_DIR's data: the recorded command named no data root,
    so in a shell without the variable lm_eval stopped ("No data root given"), and with another root it scored other
    answers. It names the root in full, and its metadata alone builds the held-out task."""
    import shlex

    from lm_eval.tasks import get_task_dict

    from culture_tasks.paths import task_manager
    from trainers.kfold import lm_eval_command

    monkeypatch.setenv("CULTURE_DATA_DIR", str(root))
    cfg = _config(tmp_path / "model", rows_file, tmp_path / "kf", root, data_dir=None)
    args = shlex.split(lm_eval_command(cfg, tmp_path / "kf" / "fold-1" / "adapter", ["wvs_usa"], ["27"], True))
    meta = json.loads(args[args.index("--metadata") + 1])
    assert meta == {"data_dir": str(root), "questions": [27]}
    monkeypatch.delenv("CULTURE_DATA_DIR")
    task = get_task_dict(["wvs_usa"], task_manager(meta))["wvs_usa"]
    assert [d["q_id"] for d in task.test_docs()] == ["27"]


def test_a_half_precision_score_is_given_again_by_its_recorded_command(tmp_path, learnable_model, rows_file, data_root,
                                                                      monkeypatch):
    """In bfloat16 a score moves with the batch it was computed in: the recorded command named neither the batch
    size nor the device, so lm_eval scored at batch 1 and gave other numbers (Q30's 1−JSD 0.43393, not 0.43386).
    It names both, and gives every question's scores again."""
    import shlex
    import sys

    from lm_eval.__main__ import cli_evaluate

    from trainers.kfold import METRICS, score

    cfg = _config(learnable_model, rows_file, tmp_path / "kf", data_root, eval_dtype="bfloat16", eval_batch_size=16)
    scored = score(cfg, None, ["wvs_usa"], None, True)
    output = tmp_path / "lm_eval"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", shlex.split(scored["command"].replace("<results>", str(output))))
    cli_evaluate()
    logged = [json.loads(line) for path in output.rglob("samples_wvs_usa_*.jsonl") for line in path.read_text().splitlines()]
    again = {str(s["doc"]["q_id"]): {m: s[m] for m in METRICS} for s in logged}
    assert again.keys() == scored["scores"]["wvs_usa"].keys()
    for q, values in scored["scores"]["wvs_usa"].items():
        assert again[q] == pytest.approx(values, abs=1e-6), q


def test_each_fold_s_recorded_command_names_the_data_root_the_run_is_scored_on(tmp_path, tiny_model, rows_file, root,
                                                                               monkeypatch):
    """A fold's training.json records the lm_eval command that scores its adapter: it named no data root (lora had
    no --data-dir), so it was left to $CULTURE_DATA_DIR, which need not be the root the folds were scored on. The
    fold's lora settings carry kfold's --data-dir, which kfold_settings.json still records."""
    from trainers.kfold import defining_settings
    from trainers.lora import scoring_data_root

    monkeypatch.setenv("CULTURE_DATA_DIR", str(tmp_path))  # another root
    cfg = _config(tiny_model, rows_file, tmp_path / "run", root)
    fold = cfg.fold_training(tmp_path / "train.jsonl", tmp_path / "adapter", False)
    assert (fold.data_dir, scoring_data_root(fold)) == (str(root), root)
    assert defining_settings(cfg)["data_dir"] == str(root)


def test_a_max_length_no_fold_example_fits_is_refused_before_the_base_model_is_scored(tmp_path, tiny_model, rows_file,
                                                                                      root, monkeypatch):
    """--max-length below every example of a fold stopped the run at that fold's training, after the base model had
    been scored on every question: each fold's rows are now checked on the tokenizer first. Through the tiny model's
    chat template the rows have Q27: 79 (seed), 85, 88 tokens; Q28: 82 (seed), 84. Fold 1 holds out Q27 and trains
    on Q28's rows, so at --max-length 81 it has no example while fold 2 keeps Q27's seed."""
    import trainers.kfold

    monkeypatch.setattr(trainers.kfold, "score", lambda *a: pytest.fail("scored before --max-length was checked"))
    out = tmp_path / "run"
    with pytest.raises(TrainingError) as err:
        run_kfold(_config(tiny_model, rows_file, out, root, max_length=81))
    assert str(err.value) == ("fold 1 (held out: Q27): every example is longer than max_length=81 tokens (the shortest "
                              "has 82); give --max-length 82 or more")
    assert not out.exists()


def test_a_resume_compares_the_data_root_by_its_survey_files_not_its_spelling(tmp_path, tiny_model, rows_file, root,
                                                                              monkeypatch):
    """--resume compared --data-dir as typed: the same folder named with a trailing slash, through a link, by a
    relative path or by $CULTURE_DATA_DIR was refused as other settings (data_dir: saved ..., given ...). The data
    root is compared by the digests of the survey files the folds are scored on: each of these, and a copy of the
    folder, resumes (recording the root as now named); a root with other answers is refused."""
    import os
    import shutil

    run = tmp_path / "run"
    first = _kfold_without_training(monkeypatch, tiny_model, rows_file, run, root)
    link, copy = tmp_path / "link", tmp_path / "copy"
    link.symlink_to(root, target_is_directory=True)
    shutil.copytree(root, copy)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CULTURE_DATA_DIR", str(root))
    for spelling in (f"{root}/", str(link), os.path.relpath(root), None, str(copy)):
        resumed = _kfold_without_training(monkeypatch, tiny_model, rows_file, run, root, resume=True, data_dir=spelling)
        assert resumed["settings"]["data_dir"] == spelling
        assert resumed["settings"]["survey_sha256"] == first["settings"]["survey_sha256"]
        assert resumed["fold_questions"] == first["fold_questions"]
    # USA's answers to Q27 and Q28 swapped: the same file names, other answers
    other = write_data_root(tmp_path / "other", rows=[(b, a, c) for a, b, c in ROWS])
    with pytest.raises(TrainingError, match=r"other settings \(survey_sha256: saved \{'culturellm/English/United "
                                            r"States.csv': 'sha256:"):
        _kfold_without_training(monkeypatch, tiny_model, rows_file, run, root, resume=True, data_dir=str(other))


@pytest.mark.parametrize("step", ["lora", "kfold"])
def test_a_model_folder_without_a_readable_tokenizer_is_refused_in_one_line(tmp_path, tiny_model, rows_file, root,
                                                                            capsys, step):
    """kfold read the tokenizer first: a --model folder that does not exist stopped with transformers' OSError and
    its traceback, and one holding only config.json (lora as kfold) with its several-line ValueError. Each is one
    line naming --model and the fix, before any model loads and with nothing written."""
    from trainers.cli import main

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_bytes((tiny_model / "config.json").read_bytes())
    missing = tmp_path / "none"
    for model in ([bare] if step == "lora" else [missing, bare]):
        out = tmp_path / "out"
        args = ["--model", str(model), "--data", str(rows_file), "--output", str(out), "--data-dir", str(root)]
        assert main([step, *args, *(["--folds", "2"] if step == "kfold" else [])]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"culture-train {step}: --model {model}: no tokenizer could be read (") and \
            err.endswith("); give a model folder holding its tokenizer files\n") and err.count("\n") == 1, err
        assert not out.exists()
