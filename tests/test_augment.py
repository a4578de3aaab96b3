"""Augmentation: similarity filter and synonym step with a stand-in generator, resume, the tiny LM."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tests.synthetic_wvs import write_data_root
from trainers.augment import AugmentConfig, AugmentError, run_augmentation, substitute, synonym_pairs
from trainers.cli import main as cli

SEED27 = "Making my parents proud is a main goal"


class BagOfWords:
    """Binary bag-of-words vectors: cosine = shared words / sqrt(len a * len b), by hand."""

    def encode(self, texts):
        vocab = sorted({w for t in texts for w in re.findall(r"\w+", t.lower())})
        return np.array([[w in set(re.findall(r"\w+", t.lower())) for w in vocab] for t in texts], dtype=float)


class StandIn:
    """Canned replies by the sentence a prompt is about; records every call."""

    name = "stand-in"

    def __init__(self, replies, fail_on_call=None):
        self.replies, self.calls, self.fail_on_call = replies, [], fail_on_call

    def complete(self, prompts, n):
        self.calls.append(len(prompts))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt
        out = []
        for p in prompts:
            kind = "para" if p.startswith("Rewrite the sentence below with") else "syn"
            sentence = p.split("Sentence: ", 1)[1]
            out.append(list(self.replies.get((kind, sentence), [""] * n))[:n])
        return out


REPLIES = {
    ("para", SEED27): [
        "Making my parents proud is a key goal",  # 7 of 8 words shared: 0.875, kept
        "1. Sentence: Making my parents proud is a main goal",  # the seed again after cleaning
        "Bananas are yellow fruit",  # nothing shared: 0.0, dropped
        "ok",  # too short: unusable
    ],
    ("syn", SEED27): ["goal -> aim\nproud -> glad\nzebra -> horse"],  # two substitutions, one word absent
    ("syn", "Making my parents proud is a key goal"): ["Making my parents proud is a key objective"],  # 6/8 = .75
}


def _config(tmp_path, **kw):
    values = dict(output=str(tmp_path / "aug.jsonl"), generator="stand-in", paraphrases=4, keep=2, threshold=0.8,
                  synonym_samples=1, questions_per_chunk=1, data_dir=str(tmp_path / "root"))
    values.update(kw)
    return AugmentConfig(**values)


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_filter_and_synonym_step_keep_known_items(tmp_path):
    write_data_root(tmp_path / "root")
    cfg = _config(tmp_path)
    state = run_augmentation(cfg, StandIn(REPLIES), BagOfWords())
    rows = _rows(tmp_path / "aug.jsonl")
    assert [(r["q_id"], r["q_content"], r["step"], r["similarity"]) for r in rows] == [
        ("27", "Making my parents proud is a key goal", "paraphrase", 0.875),
        ("27", "Making my parents proud is a main aim", "synonym", 0.875),
    ]
    assert rows[0]["ori_content"] == SEED27 and rows[0]["generator"] == "stand-in"
    c = state["counts"]
    assert c["paraphrase: below similarity 0.8"] == 1
    assert c["paraphrase: duplicate or same as seed"] == 1
    assert c["paraphrase: unusable reply"] == 1 + 2 * 4  # "ok", and Q28/Q29 got only empty replies
    assert c["synonym: word not in the sentence"] == 1
    assert c["synonym: below similarity 0.8"] == 1  # "... key objective"
    assert c["beyond the 2 most similar"] == 1  # "... glad is a main goal" (0.875) is the third
    assert c["seed questions with nothing kept"] == 2
    assert c["kept: paraphrase"] == 1 and c["kept: synonym"] == 1
    assert state["complete"] and state["done"] == ["27", "28", "29"]


def test_synonym_parsing_and_substitution():
    assert synonym_pairs("1. goal -> aim\n- 'proud' → glad.\nnot a pair\nsame -> same") == [
        ("goal", "aim"), ("proud", "glad")]
    assert substitute("Goals matter; a goal is set", "goal", "aim") == "Goals matter; a aim is set"
    assert substitute("Work is good", "work", "labour") == "Labour is good"
    assert substitute("Work is good", "play", "x") is None


def test_generator_with_nothing_usable_is_an_error_and_leaves_nothing(tmp_path):
    write_data_root(tmp_path / "root")
    with pytest.raises(AugmentError, match="returned nothing usable for any of the 3 seed questions"):
        run_augmentation(_config(tmp_path), StandIn({}), BagOfWords())
    assert not (tmp_path / "aug.jsonl").exists() and not (tmp_path / "aug.jsonl.state.json").exists()


def test_interrupted_run_resumes_to_the_uninterrupted_output(tmp_path):
    write_data_root(tmp_path / "root")
    full = _config(tmp_path, output=str(tmp_path / "full.jsonl"))
    run_augmentation(full, StandIn(REPLIES), BagOfWords())
    cfg = _config(tmp_path)
    # call 1-2: chunk Q27 (paraphrase, synonym); call 3: chunk Q28 is interrupted
    with pytest.raises(KeyboardInterrupt):
        run_augmentation(cfg, StandIn(REPLIES, fail_on_call=3), BagOfWords())
    out = tmp_path / "aug.jsonl"
    committed = out.read_bytes()
    assert len(_rows(out)) == 2
    with out.open("ab") as fh:  # a chunk that was being written when the process died
        fh.write(b'{"q_id": "28", "q_content": "half a li')
    with pytest.raises(AugmentError, match="already exists; pass --resume"):
        run_augmentation(cfg, StandIn(REPLIES), BagOfWords())
    with pytest.raises(AugmentError, match=r"other settings \(keep: saved 2, given 3\)"):
        run_augmentation(_config(tmp_path, keep=3, resume=True), StandIn(REPLIES), BagOfWords())
    assert out.read_bytes().startswith(committed)
    generator = StandIn(REPLIES)
    run_augmentation(_config(tmp_path, resume=True), generator, BagOfWords())
    assert generator.calls == [1, 1, 1, 1]  # Q28 and Q29: paraphrase + synonym call each; Q27 not redone
    assert out.read_bytes() == (tmp_path / "full.jsonl").read_bytes()


def test_a_wording_of_another_seed_question_is_not_kept_even_across_a_resume(tmp_path):
    """A rewrite of Q27 that is Q28's own wording was kept under Q27 (each question's duplicates were checked
    against its own wordings only), so a cross-validation holding Q28 out trained on Q28's prompt; so was a
    rewrite of Q28 that Q27 had already kept. Both are dropped and counted, also when the run resumes after
    Q27's chunk (the committed rows are read back)."""
    write_data_root(tmp_path / "root")
    replies = {("para", SEED27): ["When a mother works for pay, the children suffer.",
                                  "Making my parents proud is a key goal"],
               ("para", "When a mother works for pay, the children suffer"): [
                   "Making my parents proud is a key goal!", "Children suffer when mothers work for pay"]}
    settings = dict(threshold=-1.0, synonyms=False, paraphrases=2)
    state = run_augmentation(_config(tmp_path, output=str(tmp_path / "full.jsonl"), **settings),
                             StandIn(replies), BagOfWords())
    assert [(r["q_id"], r["q_content"]) for r in _rows(tmp_path / "full.jsonl")] == [
        ("27", "Making my parents proud is a key goal"), ("28", "Children suffer when mothers work for pay")]
    assert state["counts"]["paraphrase: wording of another seed question"] == 1
    assert state["counts"]["paraphrase: kept for another seed question"] == 1
    with pytest.raises(KeyboardInterrupt):  # call 2: Q28's chunk
        run_augmentation(_config(tmp_path, **settings), StandIn(replies, fail_on_call=2), BagOfWords())
    resumed = run_augmentation(_config(tmp_path, resume=True, **settings), StandIn(replies), BagOfWords())
    assert (tmp_path / "aug.jsonl").read_bytes() == (tmp_path / "full.jsonl").read_bytes()
    assert resumed["counts"] == state["counts"]


def test_a_rewrite_that_is_another_seed_question_s_wording_is_not_rewritten_in_step_2(tmp_path):
    """Step 2 substituted synonyms into Q27's rewrite that was Q28's own wording: "... the kids suffer." was kept
    under Q27 (Q28's prompt, labelled with Q27's answer) and Q28's own identical synonym rewrite was then dropped as
    kept for another seed question. Such a rewrite is dropped after step 1, counted once."""
    write_data_root(tmp_path / "root")
    seed28 = "When a mother works for pay, the children suffer"
    replies = {("para", SEED27): [seed28 + "."],  # Q27's rewrite is Q28's wording
               ("syn", seed28 + "."): ["children -> kids"],
               ("syn", seed28): ["children -> kids"]}
    generator = StandIn(replies)
    state = run_augmentation(_config(tmp_path, threshold=-1.0, paraphrases=1, keep=5, questions_per_chunk=3),
                             generator, BagOfWords())
    assert [(r["q_id"], r["step"], r["q_content"]) for r in _rows(tmp_path / "aug.jsonl")] == [
        ("28", "synonym", "When a mother works for pay, the kids suffer")]
    assert generator.calls == [3, 3]  # step 2: the three seeds only
    assert state["counts"] == {"paraphrase: unusable reply": 2, "paraphrase: wording of another seed question": 1,
                               "synonym: unusable reply": 2, "kept: synonym": 1, "seed questions with nothing kept": 2}


def test_a_resume_naming_the_generator_folder_otherwise_keeps_its_rows_generator(tmp_path, monkeypatch):
    """The generator folder is compared by content, so a resume may name it otherwise (./gen/ for /abs/gen): the
    rows written after it named "./gen/", those before it the absolute folder, as if two generators had written one
    output. They name the folder as the run began with it, byte for byte the uninterrupted run's output."""
    write_data_root(tmp_path / "root")
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "config.json").write_text('{"model": 1}', encoding="utf-8")
    replies = {**REPLIES, ("para", "When a mother works for pay, the children suffer"): [
        "When a mother works for pay, the kids suffer"]}

    def local(cfg, **kw):  # a stand-in named as LocalGenerator names itself: the folder as given
        generator = StandIn(replies, **kw)
        generator.name = cfg.generator
        return generator

    full = _config(tmp_path, output=str(tmp_path / "full.jsonl"), generator=str(gen))
    run_augmentation(full, local(full), BagOfWords())
    cfg = _config(tmp_path, generator=str(gen))
    with pytest.raises(KeyboardInterrupt):  # Q27 committed, then stopped
        run_augmentation(cfg, local(cfg, fail_on_call=3), BagOfWords())
    monkeypatch.chdir(tmp_path)
    resumed = _config(tmp_path, generator="./gen/", resume=True)
    run_augmentation(resumed, local(resumed), BagOfWords())
    rows = _rows(tmp_path / "aug.jsonl")
    assert [(r["q_id"], r["generator"]) for r in rows] == [("27", str(gen)), ("27", str(gen)), ("28", str(gen))]
    assert (tmp_path / "aug.jsonl").read_bytes() == (tmp_path / "full.jsonl").read_bytes()


def _tiny_sentence_model(tiny_model, path):
    from sentence_transformers import SentenceTransformer, models

    word = models.Transformer(str(tiny_model))
    pooling = models.Pooling(word.auto_model.config.hidden_size, pooling_mode="mean")
    SentenceTransformer(modules=[word, pooling], device="cpu").save(str(path))
    return path


def test_end_to_end_with_the_tiny_local_lm(tmp_path, tiny_model):
    from trainers.generators import LocalGenerator
    from trainers.similarity import Embedder

    write_data_root(tmp_path / "root")
    embedder = Embedder(str(_tiny_sentence_model(tiny_model, tmp_path / "st")))
    outputs = []
    for name in ("a.jsonl", "b.jsonl"):
        cfg = _config(tmp_path, output=str(tmp_path / name), generator=str(tiny_model), threshold=-1.0, keep=3,
                      paraphrases=3, questions_per_chunk=2, max_new_tokens=12, seed=7)
        generator = LocalGenerator(cfg.generator, batch_size=4, max_new_tokens=12)
        state = run_augmentation(cfg, generator, embedder)
        outputs.append((tmp_path / name).read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1]  # same seed, same output
    rows = [json.loads(line) for line in outputs[0].splitlines()]
    assert rows and all(r["generator"] == str(tiny_model) and -1 <= r["similarity"] <= 1 for r in rows)
    assert {r["step"] for r in rows} <= {"paraphrase", "synonym"}
    kept = sum(v for k, v in state["counts"].items() if k.startswith("kept:"))
    assert kept == len(rows) <= 3 * 3


def test_cli_reports_a_missing_embedding_model_and_writes_nothing(tmp_path, tiny_model, capsys):
    write_data_root(tmp_path / "root")
    out = tmp_path / "aug.jsonl"
    code = cli(["augment", "--generator", str(tiny_model), "--embedding-model", str(tmp_path / "nope"),
                "--output", str(out), "--data-dir", str(tmp_path / "root")])
    assert code == 2
    assert f"embedding model folder {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    assert not out.exists()
    assert cli(["augment", "--output", str(out)]) == 2
    assert "name exactly one generator" in capsys.readouterr().err


def test_a_model_folder_that_is_no_sentence_transformers_model_is_refused_before_the_generator_loads(
        tmp_path, tiny_model, capsys, monkeypatch):
    """A causal LM as --embedding-model was wrapped in mean pooling without a word, and its cosines filtered the
    variants."""
    import trainers.generators
    from trainers.similarity import INSTALL_HINT

    monkeypatch.setattr(trainers.generators, "LocalGenerator", lambda *a, **k: pytest.fail("loaded the generator"))
    write_data_root(tmp_path / "root")
    out = tmp_path / "aug.jsonl"
    assert cli(["augment", "--generator", str(tiny_model), "--embedding-model", str(tiny_model), "--output", str(out),
                "--data-dir", str(tmp_path / "root")]) == 2
    assert capsys.readouterr().err == (f"culture-train augment: embedding model folder {tiny_model} has no "
                                       "modules.json, so it is no sentence-transformers model (it would be mean-pooled "
                                       f"as it is); {INSTALL_HINT}\n")
    assert not out.exists()


def test_endpoint_generator_speaks_openai_chat_completions(monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from trainers.generators import EndpointError, EndpointGenerator, reply_seed

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers.get("Authorization"), body))
            if body["model"] == "broken":
                self.send_response(503)
                self.end_headers()
                self.wfile.write(b"overloaded")
                return
            prompt = body["messages"][0]["content"]
            n = 1 if body["model"] == "one-reply" else body["n"]  # a server that ignores n=
            choices = [{"message": {"role": "assistant", "content": f"{i}:{prompt[-5:]}"}} for i in range(n)]
            data = json.dumps({"choices": choices}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OPENAI_API_KEY", "k123")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        url = f"http://127.0.0.1:{server.server_port}/v1"
        gen = EndpointGenerator(url, "m", max_new_tokens=7, temperature=0.5)
        assert gen.complete(["say alpha", "say gamma"], 2) == [["0:alpha", "1:alpha"], ["0:gamma", "1:gamma"]]
        path, auth, body = seen[0]
        assert path == "/v1/chat/completions" and auth == "Bearer k123"
        assert body["n"] == 2 and body["max_tokens"] == 7 and body["temperature"] == 0.5 and body["model"] == "m"
        assert body["seed"] == reply_seed(0, "say alpha", 0) and seen[1][2]["seed"] == reply_seed(0, "say gamma", 0)
        with pytest.raises(EndpointError, match="answered 503: overloaded"):
            EndpointGenerator(url, "broken").complete(["x"], 1)
        with pytest.raises(EndpointError, match="returned 1 replies for n=3"):
            EndpointGenerator(url, "one-reply").complete(["x"], 3)
    finally:
        server.shutdown()


def test_an_endpoint_that_cannot_be_reached_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    """A refused connection was a requests traceback; the finished chunks stay for --resume."""
    import socket

    import trainers.similarity

    write_data_root(tmp_path / "root")
    monkeypatch.setattr(trainers.similarity, "Embedder", lambda *a, **k: BagOfWords())
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    url = f"http://127.0.0.1:{port}/v1"
    assert cli(["augment", "--endpoint", url, "--endpoint-model", "m", "--output", str(tmp_path / "aug.jsonl"),
                "--data-dir", str(tmp_path / "root")]) == 2
    last = capsys.readouterr().err.split("\r")[-1].splitlines()[-1]  # after the progress bars
    assert last == (f"culture-train augment: endpoint {url}/chat/completions could not be reached (ConnectionError); "
                    "check --endpoint and that the server runs")


def test_augment_never_writes_over_the_seed_bank_it_read(tmp_path):
    """With --seed-questions the data root's WVQ.jsonl is still read (the seeds' text and scale): an input."""
    root = write_data_root(tmp_path / "root")
    bank = root / "culturellm" / "WVQ.jsonl"
    before = bank.read_bytes()
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"q_id": "27", "q_content": SEED27}) + "\n", encoding="utf-8")
    loaded = []
    for output in (bank, seeds):
        cfg = _config(tmp_path, output=str(output), seed_questions=str(seeds), overwrite=True)
        with pytest.raises(AugmentError, match=f"output {output} is also an input of this run"):
            run_augmentation(cfg, load_models=lambda: loaded.append(1))
    assert bank.read_bytes() == before and loaded == []
    state = run_augmentation(_config(tmp_path, seed_questions=str(seeds)), StandIn(REPLIES), BagOfWords())
    assert state["done"] == ["27"] and len(_rows(tmp_path / "aug.jsonl")) == 2


def test_resume_refuses_a_changed_seed_bank_behind_seed_questions(tmp_path):
    """The --seed-questions file names the seeds; their text comes from the data root's bank, whose
    content is a setting of the run too."""
    root = write_data_root(tmp_path / "root")
    seeds = tmp_path / "seeds.jsonl"
    bank = root / "culturellm" / "WVQ.jsonl"
    rows = [json.loads(line) for line in bank.read_text(encoding="utf-8").splitlines() if line.strip()]
    seeds.write_text("".join(json.dumps({"q_id": r["q_id"], "q_content": r["q_content"]}) + "\n"
                             for r in rows if r["q_id"] in ("27", "28")), encoding="utf-8")
    cfg = _config(tmp_path, seed_questions=str(seeds))
    with pytest.raises(KeyboardInterrupt):  # Q27 committed, then stopped
        run_augmentation(cfg, StandIn(REPLIES, fail_on_call=3), BagOfWords())
    original = bank.read_bytes()
    bank.write_bytes(original.replace(SEED27.encode(), b"Making my parents proud is my main goal"))
    with pytest.raises(AugmentError, match=r"other settings \(seed_bank_sha256: saved 'sha256:[0-9a-f]{64}', "
                                           r"given 'sha256:[0-9a-f]{64}'\)"):
        run_augmentation(_config(tmp_path, seed_questions=str(seeds), resume=True), StandIn(REPLIES), BagOfWords())
    bank.write_bytes(original)  # the bank as the run began: it resumes
    state = run_augmentation(_config(tmp_path, seed_questions=str(seeds), resume=True), StandIn(REPLIES),
                             BagOfWords())
    assert state["done"] == ["27", "28"] and state["complete"]


def test_cli_checks_the_output_and_resume_settings_before_loading_models(tmp_path, monkeypatch, capsys):
    import trainers.similarity

    write_data_root(tmp_path / "root")
    loaded = []

    class Recorded(BagOfWords):
        def __init__(self, *args, **kwargs):
            loaded.append("embedder")

    def generator(cfg):
        loaded.append("generator")
        return StandIn(REPLIES)

    monkeypatch.setattr(trainers.similarity, "Embedder", Recorded)
    monkeypatch.setattr(AugmentConfig, "make_generator", generator)
    with pytest.raises(KeyboardInterrupt):  # a stopped run: Q27 committed, its state file saved
        run_augmentation(_config(tmp_path), StandIn(REPLIES, fail_on_call=3), BagOfWords())
    out = tmp_path / "aug.jsonl"
    committed = out.read_bytes()
    args = ["augment", "--generator", "stand-in", "--output", str(out), "--data-dir", str(tmp_path / "root"),
            "--paraphrases", "4", "--threshold", "0.8", "--synonym-samples", "1", "--questions-per-chunk", "1"]
    assert cli(args + ["--keep", "2"]) == 2
    assert "already exists; pass --resume to continue the run there, --overwrite" in capsys.readouterr().err
    assert cli(args + ["--keep", "3", "--resume"]) == 2
    assert "other settings (keep: saved 2, given 3)" in capsys.readouterr().err
    assert loaded == [] and out.read_bytes() == committed
    assert cli(args + ["--keep", "2", "--resume"]) == 0  # the same run: now, and only now, the models load
    assert loaded == ["embedder", "generator"] and len(_rows(out)) == 2


@pytest.mark.parametrize("setting, message", [
    (dict(temperature=0.0), "temperature must be a positive number"),
    (dict(temperature=float("nan")), "temperature must be a positive number"),
    (dict(top_p=0.0), r"top_p is a probability mass in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p is a probability mass in \(0, 1\]"),
])
def test_sampling_settings_are_checked_before_anything_loads(tmp_path, setting, message):
    """transformers refuses temperature 0 only inside generate(), after the models loaded and the
    output was started."""
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, **setting)


def test_dtype_auto_loads_the_local_generator(tiny_model):
    from trainers.generators import LocalGenerator

    generator = LocalGenerator(str(tiny_model), dtype="auto", max_new_tokens=2)
    assert len(generator.complete(["Say yes"], 2)[0]) == 2


def test_resume_refuses_another_model_under_the_same_folder(tmp_path):
    """The generator and the embedding model are compared by content: a folder that now holds
    another model would mix two models' wordings in one output."""
    write_data_root(tmp_path / "root")
    generator, embedding = tmp_path / "gen", tmp_path / "emb"
    for folder in (generator, embedding):
        folder.mkdir()
        (folder / "config.json").write_text('{"model": 1}', encoding="utf-8")
    folders = dict(generator=str(generator), embedding_model=str(embedding))
    with pytest.raises(KeyboardInterrupt):  # Q27 committed, then stopped
        run_augmentation(_config(tmp_path, **folders), StandIn(REPLIES, fail_on_call=3), BagOfWords())
    for folder, key in ((generator, "generator_fingerprint"), (embedding, "embedding_fingerprint")):
        (folder / "config.json").write_text('{"model": 2}', encoding="utf-8")
        with pytest.raises(AugmentError, match=rf"other settings \({key}: saved 'sha256-full:[0-9a-f]{{64}}', given"):
            run_augmentation(_config(tmp_path, resume=True, **folders), StandIn(REPLIES), BagOfWords())
        (folder / "config.json").write_text('{"model": 1}', encoding="utf-8")
    state = run_augmentation(_config(tmp_path, resume=True, **folders), StandIn(REPLIES), BagOfWords())
    assert state["complete"] and state["done"] == ["27", "28", "29"]


def test_resume_of_a_run_stored_without_model_fingerprints_warns(tmp_path, caplog):
    write_data_root(tmp_path / "root")
    with pytest.raises(KeyboardInterrupt):
        run_augmentation(_config(tmp_path), StandIn(REPLIES, fail_on_call=3), BagOfWords())
    state_file = tmp_path / "aug.jsonl.state.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    for key in ("generator_fingerprint", "embedding_fingerprint"):
        del state["settings"][key]
    state_file.write_text(json.dumps(state), encoding="utf-8")
    assert run_augmentation(_config(tmp_path, resume=True), StandIn(REPLIES), BagOfWords())["complete"]
    assert "was stored without generator_fingerprint, embedding_fingerprint; that is not checked" in caplog.text


def test_resume_of_a_run_sampled_under_another_scheme_is_refused(tmp_path):
    """A state stored before replies had their own seeds (no ``sampling`` setting) continued under the
    current scheme would mix two samples in one output: refused, naming the setting."""
    write_data_root(tmp_path / "root")
    with pytest.raises(KeyboardInterrupt):
        run_augmentation(_config(tmp_path), StandIn(REPLIES, fail_on_call=3), BagOfWords())
    state_file = tmp_path / "aug.jsonl.state.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    assert state["settings"].pop("sampling").startswith("reply_seed(seed, prompt, index)")
    state_file.write_text(json.dumps(state), encoding="utf-8")
    with pytest.raises(AugmentError, match="other settings \\(sampling: saved None"):
        run_augmentation(_config(tmp_path, resume=True), StandIn(REPLIES), BagOfWords())


def test_a_half_precision_run_resumed_under_another_batch_size_is_refused(tmp_path, caplog):
    """In bfloat16 the local generator's replies move with the batch (a tiny-LM reply differed between batch 6
    and 240, its logits rounded otherwise): a run killed and resumed under another --batch-size wrote other
    rows than the uninterrupted run, unannounced. In half precision the batch size, device and kernels are
    settings of the run; in float32 they may change; a run stored before them resumes with a warning."""
    from culture_tasks.provenance import kernels

    write_data_root(tmp_path / "root")
    for dtype in ("bfloat16", "float32"):
        out = tmp_path / f"{dtype}.jsonl"
        with pytest.raises(KeyboardInterrupt):  # Q27 committed, then stopped
            run_augmentation(_config(tmp_path, output=str(out), dtype=dtype, batch_size=4),
                             StandIn(REPLIES, fail_on_call=3), BagOfWords())
        state_file = tmp_path / f"{dtype}.jsonl.state.json"
        settings = json.loads(state_file.read_text(encoding="utf-8"))["settings"]
        resumed = _config(tmp_path, output=str(out), dtype=dtype, batch_size=8, resume=True)
        if dtype == "float32":
            assert not {"batch_size", "device", "kernels"} & set(settings)
            assert run_augmentation(resumed, StandIn(REPLIES), BagOfWords())["done"] == ["27", "28", "29"]
            continue
        assert (settings["batch_size"], settings["device"], settings["kernels"]) == (4, "cpu", kernels("cpu"))
        with pytest.raises(AugmentError, match=r"other settings \(batch_size: saved 4, given 8\); resume with"):
            run_augmentation(resumed, StandIn(REPLIES), BagOfWords())
        state = json.loads(state_file.read_text(encoding="utf-8"))
        for key in ("batch_size", "device", "kernels"):
            del state["settings"][key]
        state_file.write_text(json.dumps(state), encoding="utf-8")
        assert run_augmentation(resumed, StandIn(REPLIES), BagOfWords())["done"] == ["27", "28", "29"]
        assert "was stored without batch_size, device, kernels; that is not checked" in caplog.text


def test_local_sampling_does_not_depend_on_the_batch(tiny_model):
    """Each reply has its own seed (run seed, prompt, reply number): a prompt's replies are the same
    alone or batched with others, at any batch size; another run seed draws others."""
    from trainers.generators import LocalGenerator

    prompts = ["Rewrite: the sky is blue", "Rewrite: children suffer", "Rewrite: a longer prompt about work and family"]
    alone = [LocalGenerator(str(tiny_model), batch_size=3, max_new_tokens=8, seed=5).complete([p], 3)[0]
             for p in prompts]
    for batch_size in (3, 64):
        generator = LocalGenerator(str(tiny_model), batch_size=batch_size, max_new_tokens=8, seed=5)
        assert generator.complete(prompts, 3) == alone
        assert generator.complete(prompts[::-1], 3) == alone[::-1]
    assert len({r for replies in alone for r in replies}) > 3  # sampled, not three greedy copies
    other = LocalGenerator(str(tiny_model), batch_size=64, max_new_tokens=8, seed=6).complete(prompts, 3)
    assert other != alone


@pytest.mark.parametrize("flags, message", [
    (["--endpoint", "http://127.0.0.1:9/v1", "--endpoint-model", "m", "--dtype", "bfloat16"],
     "--dtype has no effect with --endpoint (the server runs the model in its own precision); drop it"),
    (["--endpoint", "http://127.0.0.1:9/v1", "--endpoint-model", "m", "--batch-size", "8"],
     "--batch-size has no effect with --endpoint (the server batches the requests itself); drop it"),
    (["--generator", "g", "--endpoint-model", "m"],
     "--endpoint-model has no effect without --endpoint (the local --generator is the model); drop it"),
    (["--generator", "g", "--no-synonyms", "--synonym-samples", "3"],
     "--synonym-samples has no effect with --no-synonyms (step 2 is skipped); drop it"),
])
def test_a_setting_the_run_would_not_use_is_refused(flags, message, tmp_path, capsys):
    # these were recorded among the run's settings (state file, resume checks) and ignored
    out = tmp_path / "aug.jsonl"
    assert cli(["augment", *flags, "--output", str(out)]) == 2
    assert capsys.readouterr().err == f"culture-train augment: {message}\n"
    assert not out.exists()
    config = tmp_path / "run.yaml"  # in the --config file too, named there
    config.write_text("synonyms: false\nsynonym_samples: 2\n")
    assert cli(["augment", "--generator", "g", "--output", str(out), "--config", str(config)]) == 2
    assert capsys.readouterr().err == (f"culture-train augment: synonym_samples in {config} has no effect with "
                                       "--no-synonyms (step 2 is skipped); drop it\n")


@pytest.mark.parametrize("state, problem", [
    ([], "a JSON list, not a mapping"),
    ({"done": []}, "no settings, bytes, counts, complete"),
    ({"settings": {}, "done": [27], "bytes": "0", "counts": {}, "complete": False}, "bytes, done of the wrong type"),
])
def test_a_state_file_that_is_not_one_is_a_one_line_error(tmp_path, capsys, state, problem):
    """A cut or edited <output>.state.json gave a KeyError / AttributeError traceback on --resume, and in
    `culture-train data` reading the output; now the state file, what is wrong and the fix. --overwrite
    then starts the run again."""
    from trainers.examples import build_examples

    write_data_root(tmp_path / "root")
    with pytest.raises(KeyboardInterrupt):  # a stopped run: Q27 committed, its state file saved
        run_augmentation(_config(tmp_path), StandIn(REPLIES, fail_on_call=3), BagOfWords())
    out, state_file = tmp_path / "aug.jsonl", tmp_path / "aug.jsonl.state.json"
    state_file.write_text(json.dumps(state), encoding="utf-8")
    capsys.readouterr()  # the stopped run's progress bar
    expected = (f"{state_file}: not an augmentation state file ({problem}; expected the mapping of settings, done, "
                "bytes, counts, complete a run writes); ")
    args = ["augment", "--generator", "stand-in", "--output", str(out), "--data-dir", str(tmp_path / "root"),
            "--paraphrases", "4", "--keep", "2", "--threshold", "0.8", "--synonym-samples", "1",
            "--questions-per-chunk", "1"]
    assert cli(args + ["--resume"]) == 2
    assert capsys.readouterr().err == (f"culture-train augment: {expected}start again with --overwrite (the finished "
                                       "chunks cannot be checked)\n")
    with pytest.raises(AugmentError) as err:
        build_examples("english", questions_file=str(out), data_dir=str(tmp_path / "root"))
    assert str(err.value) == (f"{expected}run the augmentation again with `culture-train augment --output {out} "
                              "--overwrite`, or delete the state file if that run finished")
    state = run_augmentation(_config(tmp_path, overwrite=True), StandIn(REPLIES), BagOfWords())
    assert state["complete"] and state["done"] == ["27", "28", "29"]


def test_the_generator_s_own_decoding_settings_do_not_shape_the_replies(tiny_model, tmp_path, monkeypatch):
    # only temperature, top-p and top-k were switched off: a checkpoint's repetition penalty (Qwen2.5-Instruct
    # ships 1.05-1.1), n-gram ban or minimum length still shaped every reply, pushing paraphrases off the seed's
    # wording, and the run's settings said nothing of it
    import shutil

    import transformers.generation.logits_process as lp
    from transformers import GenerationConfig

    from trainers.generators import LocalGenerator

    model = tmp_path / "shaped"
    shutil.copytree(tiny_model, model)
    GenerationConfig(repetition_penalty=1.3, no_repeat_ngram_size=2, min_new_tokens=6, num_beams=2,
                     bos_token_id=1, eos_token_id=2).save_pretrained(model)
    made = []
    for name in ("RepetitionPenaltyLogitsProcessor", "NoRepeatNGramLogitsProcessor", "MinNewTokensLengthLogitsProcessor",
                 "MinLengthLogitsProcessor"):
        cls = getattr(lp, name)
        monkeypatch.setattr(cls, "__init__", (lambda init, n: lambda self, *a, **k: made.append(n) or init(self, *a, **k))(
            cls.__init__, name))
    prompts = ["Say it again: the sky is blue"]
    shaped = LocalGenerator(str(model), batch_size=3, max_new_tokens=8, seed=5).complete(prompts, 3)
    assert made == []
    assert shaped == LocalGenerator(str(tiny_model), batch_size=3, max_new_tokens=8, seed=5).complete(prompts, 3)
