"""culture-model: the GGUF conversion cache is keyed by content, names stay in the cache, and a
truncated safetensors file is one line naming it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from culture_tasks import models
from tests.tiny_gguf import write_tiny_gguf


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    (root / "a").mkdir()
    (root / "b").mkdir()
    return write_tiny_gguf(root / "a" / "tiny.gguf", seed=0), write_tiny_gguf(root / "b" / "tiny.gguf", seed=1)


def _embedding(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))["model.embed_tokens.weight"]


def _gguf_embedding(path):
    import gguf

    (tensor,) = [t for t in gguf.GGUFReader(str(path)).tensors if t.name == "token_embd.weight"]
    return np.asarray(tensor.data)


@pytest.mark.parametrize("value, cache", [("", "{home}/.cache/culture-align/models"), ("~/models", "{home}/models"),
                                          ("/srv/models", "/srv/models")])
def test_the_model_cache_variable_set_empty_is_unset_and_a_tilde_is_home(value, cache, tmp_path):
    """``CULTURE_MODEL_CACHE=`` made the cache the working folder: ``from-gguf --package`` converted into it."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "CULTURE_MODEL_CACHE": value, "HOME": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    found = subprocess.run([sys.executable, "-c", "import culture_tasks.models as m; print(m.DEFAULT_CACHE)"], env=env,
                           cwd=repo, capture_output=True, text=True, check=True).stdout
    assert found == cache.format(home=tmp_path) + "\n"


def test_same_name_from_another_file_is_refused_then_rebuilt_with_overwrite(ggufs, tmp_path, monkeypatch, capsys):
    first, second = ggufs
    monkeypatch.setattr(models, "DEFAULT_CACHE", tmp_path / "cache")
    folder = tmp_path / "cache" / "tiny"
    assert models.main(["from-gguf", "--gguf", str(first)]) == 0
    assert capsys.readouterr().out == f"{folder}\n"
    np.testing.assert_array_equal(_embedding(folder), _gguf_embedding(first))
    stored = json.loads((folder / models.SOURCE_FILE).read_text())
    assert stored["gguf_sha256"] == models.gguf_sha256([first])
    # readable like any new file and folder under the umask (safetensors writes 0600, mkdtemp makes 0700)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    assert {stat.S_IMODE(f.stat().st_mode) for f in folder.iterdir()} == {0o666 & ~umask}

    # the same content again: the folder is reused (not rewritten)
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert models.main(["from-gguf", "--gguf", str(first)]) == 0
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime

    # another file with the same stem: refused, folder untouched
    assert models.main(["from-gguf", "--gguf", str(second)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(folder) in err and "another GGUF file" in err and "--overwrite" in err
    np.testing.assert_array_equal(_embedding(folder), _gguf_embedding(first))

    assert models.main(["from-gguf", "--gguf", str(second), "--overwrite"]) == 0
    np.testing.assert_array_equal(_embedding(folder), _gguf_embedding(second))
    assert not _gguf_embedding(first).tolist() == _gguf_embedding(second).tolist()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tiny"]  # no staging folders left


def test_split_parts_hash_as_the_joined_file(ggufs, tmp_path):
    first, _ = ggufs
    data = first.read_bytes()
    parts = [tmp_path / "part1", tmp_path / "part2"]
    parts[0].write_bytes(data[:1000])
    parts[1].write_bytes(data[1000:])
    import hashlib

    assert models.gguf_sha256(parts) == hashlib.sha256(data).hexdigest() == models.gguf_sha256([first])
    joined_in = []
    concatenate = models._concatenate
    with pytest.MonkeyPatch.context() as mp:  # the joined file lies beside the output, not in the system temp folder
        mp.setattr(models, "_concatenate", lambda parts, target: joined_in.append(target.parent.parent)
                   or concatenate(parts, target))
        out = models.convert_gguf(parts, tmp_path / "models" / "joined")
    assert joined_in == [tmp_path / "models"]
    np.testing.assert_array_equal(_embedding(out), _gguf_embedding(first))
    assert sorted(p.name for p in out.parent.iterdir()) == ["joined"]  # no join or staging folder left


def test_a_folder_without_a_recorded_source_is_not_reused(ggufs, tmp_path, capsys):
    first, _ = ggufs
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my files")
    assert models.main(["from-gguf", "--gguf", str(first), "--output", str(tmp_path / "mine")]) == 2
    err = capsys.readouterr().err
    assert "no gguf_source.json" in err and "--overwrite" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "my files"


@pytest.mark.parametrize("name", ["../..", "..", ".", "a/b", "/tmp/x", "a\\b", ""])
def test_name_must_stay_inside_the_cache(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(models, "DEFAULT_CACHE", tmp_path / "cache")
    missing = tmp_path / "no.gguf"  # the name is refused before the file is even looked at
    assert models.main(["from-gguf", "--gguf", str(missing), "--name", name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--name {name!r} must be a plain folder name" in err
    assert not (tmp_path / "cache").exists()


def test_output_that_is_a_file_is_refused_before_converting(ggufs, tmp_path, monkeypatch, capsys):
    first, _ = ggufs

    def no_conversion(*_):
        raise AssertionError("converted before checking the output")

    monkeypatch.setattr(models, "_save_converted", no_conversion)
    target = tmp_path / "model"
    target.write_text("x")
    assert models.main(["from-gguf", "--gguf", str(first), "--output", str(target)]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_truncated_safetensors_is_one_line_naming_the_file(ggufs, tmp_path, capsys):
    first, _ = ggufs
    folder = models.convert_gguf(first, tmp_path / "model")
    models.check_safetensors(folder)  # complete: no error
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 16])
    with pytest.raises(models.ModelFileError, match="truncated or damaged") as err:
        models.check_safetensors(folder)
    assert str(weights) in str(err.value) and "\n" not in str(err.value)
    assert models.main(["check", str(folder)]) == 2
    assert str(weights) in capsys.readouterr().err
    # the cache does not hand out a damaged conversion either
    assert models.main(["from-gguf", "--gguf", str(first), "--output", str(folder)]) == 2
    err = capsys.readouterr().err
    assert str(weights) in err and "--overwrite" in err
    assert models.main(["from-gguf", "--gguf", str(first), "--output", str(folder), "--overwrite"]) == 0
    models.check_safetensors(folder)
    assert weights.stat().st_size == len(data)


def test_a_cached_folder_whose_weights_are_gone_is_not_reused(ggufs, tmp_path, capsys):
    first, _ = ggufs
    folder = models.convert_gguf(first, tmp_path / "model")
    (folder / "model.safetensors").unlink()
    assert models.main(["from-gguf", "--gguf", str(first), "--output", str(folder)]) == 2
    assert "holds no *.safetensors file" in capsys.readouterr().err
    assert models.main(["from-gguf", "--gguf", str(first), "--output", str(folder), "--overwrite"]) == 0
    np.testing.assert_array_equal(_embedding(folder), _gguf_embedding(first))


def test_sharded_index_naming_a_missing_shard(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-00001.safetensors"}}))
    with pytest.raises(models.ModelFileError, match="model-00001.safetensors"):
        models.check_safetensors(tmp_path)


def _no_conversion(*_):
    raise AssertionError("converted before the output was checked")


@pytest.mark.parametrize("output", ["g", "."])  # the gguf's own folder, or a folder above it
def test_overwrite_never_deletes_the_input_gguf(ggufs, tmp_path, monkeypatch, capsys, output):
    """``--gguf g/tiny.gguf --output g --overwrite`` used to swap g (the input with it) for the model."""
    first, _ = ggufs
    gguf = tmp_path / "g" / "tiny.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(first.read_bytes())
    monkeypatch.setattr(models, "_save_converted", _no_conversion)
    out = tmp_path / output
    assert models.main(["from-gguf", "--gguf", str(gguf), "--output", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"holds the input {gguf}" in err and "choose another --output" in err
    assert gguf.read_bytes() == first.read_bytes()
    assert sorted(p.name for p in gguf.parent.iterdir()) == ["tiny.gguf"]
    assert not (tmp_path / f"{out.resolve().name}.lock").exists()


def test_a_conversion_into_a_locked_output_is_refused(ggufs, tmp_path, monkeypatch, capsys):
    """The lock is ``<output>.lock`` beside the folder (the folder itself is swapped by a rename)."""
    from culture_tasks.outputs import OutputLock

    first, _ = ggufs
    out = tmp_path / "model"
    with OutputLock.for_file(out):
        monkeypatch.setattr(models, "_save_converted", _no_conversion)
        assert models.main(["from-gguf", "--gguf", str(first), "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{out} is in use by another run (process {os.getpid()}" in err
        assert f"lock file {tmp_path / 'model.lock'}" in err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.lock"]  # nothing converted
    monkeypatch.undo()
    assert models.main(["from-gguf", "--gguf", str(first), "--output", str(out)]) == 0
    np.testing.assert_array_equal(_embedding(out), _gguf_embedding(first))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the run's own lock is gone


def _no_hashing(*_):
    raise AssertionError("read the GGUF content before checking its parts")


def test_gguf_split_shards_are_refused_before_anything_is_read(tmp_path, monkeypatch, capsys):
    """llama.cpp's gguf-split shards are GGUF files of their own: joined byte by byte, the first one's
    header names only its own tensors, and the model was saved with the others randomly initialised."""
    write_tiny_gguf(tmp_path / "tiny.gguf", split_max_tensors=6)
    shards = sorted(tmp_path.glob("tiny-*-of-*.gguf"))
    assert [p.name for p in shards] == ["tiny-00001-of-00002.gguf", "tiny-00002-of-00002.gguf"]
    monkeypatch.setattr(models, "_save_converted", _no_conversion)
    monkeypatch.setattr(models, "gguf_sha256", _no_hashing)
    assert models.main(["from-gguf", "--gguf", *map(str, shards), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{shards[1]} is a GGUF file of its own" in err
    assert "llama-gguf-split --merge" in err
    monkeypatch.undo()
    monkeypatch.setattr(models, "_save_converted", _no_conversion)
    # the first shard alone is a complete GGUF file that holds 6 of the 12 tensors
    assert models.main(["from-gguf", "--gguf", str(shards[0]), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{shards[0]} is shard 1 of 2" in err and "llama-gguf-split --merge" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in shards]


def test_a_gguf_lacking_a_tensor_is_refused_not_filled_with_random_weights(tmp_path, capsys):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", leave_out=("blk.0.ffn_down.weight",))
    assert models.main(["from-gguf", "--gguf", str(gguf), "--output", str(tmp_path / "out")]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after transformers' own progress bars and load report
    assert last.startswith(f"culture-model: {gguf} lacks 1 weight(s)") and "model.layers.0.mlp.down_proj.weight" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.gguf"]  # no model, no staging folder


@pytest.mark.parametrize("damage", ["parts out of order", "cut short"])
def test_parts_out_of_order_or_a_cut_gguf_is_one_line_before_converting(ggufs, tmp_path, monkeypatch, capsys,
                                                                         damage):
    """Both were a traceback from inside the GGUF reader (naming a temporary file for joined parts)."""
    first, _ = ggufs
    data = first.read_bytes()
    if damage == "parts out of order":
        parts = [tmp_path / "part2", tmp_path / "part1"]
        parts[1].write_bytes(data[:1000])
        parts[0].write_bytes(data[1000:])
        expected = f"{parts[0]} is not a GGUF file"
    else:
        parts = [tmp_path / "cut.gguf"]
        parts[0].write_bytes(data[:-500])
        expected = f"{parts[0]} is not a complete GGUF file"
    monkeypatch.setattr(models, "_save_converted", _no_conversion)
    assert models.main(["from-gguf", "--gguf", *map(str, parts), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
    assert not (tmp_path / "out").exists()


def test_numbered_parts_out_of_number_order_or_twice_are_refused_before_converting(ggufs, tmp_path, monkeypatch,
                                                                                     capsys):
    """A shell glob gives part1 part10 part2: the first part's header was whole, so the joined file converted
    without a word into a model whose weights were the GGUF's bytes shuffled."""
    first, _ = ggufs
    data = first.read_bytes()
    cuts = [0, 1000, 1000 + (len(data) - 1000) // 2, len(data)]
    one, two, ten = (tmp_path / f"part{n}.bin" for n in (1, 2, 10))
    for part, start, end in zip((one, two, ten), cuts, cuts[1:]):
        part.write_bytes(data[start:end])
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "_save_converted", _no_conversion)
        assert models.main(["from-gguf", "--gguf", str(one), str(ten), str(two), "--output", str(out)]) == 2
        assert capsys.readouterr().err == (
            f"culture-model: --gguf {two} comes after {ten} though its number is lower: split parts are joined in "
            "the order given; list them in number order (e.g. `$(ls part*.bin | sort -V)`), or rename them if "
            "this order is the file's\n")
        assert models.main(["from-gguf", "--gguf", str(one), str(two), str(two), str(ten), "--output", str(out)]) == 2
        assert capsys.readouterr().err == (f"culture-model: --gguf names {two} twice; give each split part once, "
                                           "in order\n")
    assert not out.exists()
    assert models.main(["from-gguf", "--gguf", str(one), str(two), str(ten), "--output", str(out)]) == 0
    np.testing.assert_array_equal(_embedding(out), _gguf_embedding(first))


def test_check_of_a_folder_without_weights_is_an_error_not_complete(tmp_path, capsys):
    """An empty folder, or one whose weights never arrived, was reported 'safetensors files complete'."""
    (tmp_path / "config.json").write_text("{}")
    assert models.main(["check", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"culture-model: {tmp_path} holds no *.safetensors file\n"


@pytest.mark.parametrize("index", ['{"metadata": {}, "weight_map": {"a": "model-0', "[]", '{"weight_map": ["x"]}'])
def test_check_of_a_cut_or_malformed_weight_index_is_one_line(tmp_path, capsys, index):
    """A cut model.safetensors.index.json (an interrupted download) was a JSONDecodeError traceback."""
    (tmp_path / "model-00001-of-00001.safetensors").write_bytes(b"")
    (tmp_path / "model.safetensors.index.json").write_text(index)
    assert models.main(["check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"culture-model: {tmp_path / 'model.safetensors.index.json'} is not a readable weight index")


def test_a_gguf_of_an_architecture_transformers_cannot_load_is_one_line(tmp_path, capsys):
    """transformers' 'architecture ... is not supported' came out as a traceback from inside its GGUF loader."""
    import gguf

    path = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(str(path), "rwkv6")
    writer.add_context_length(64)
    writer.add_embedding_length(16)
    writer.add_block_count(1)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["<unk>", "<s>", "</s>", "a"])
    writer.add_token_scores([0.0] * 4)
    writer.add_token_types([2, 3, 3, 1])
    writer.add_tensor("token_embd.weight", np.zeros((4, 16), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert models.main(["from-gguf", "--gguf", str(path), "--output", str(tmp_path / "out")]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"culture-model: {path} cannot be converted by transformers") and "rwkv6" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.gguf"]  # no model, no staging folder, no lock


@pytest.mark.parametrize("extra", [
    {"rope_freqs.weight": np.ones(4, np.float32)},  # Llama 3's rope frequency factors
    {"blk.0.attn_q.bias": np.ones(16, np.float32), "blk.0.attn_k.bias": np.ones(8, np.float32)},
])
def test_a_gguf_tensor_transformers_does_not_load_is_refused_not_left_out(tmp_path, capsys, extra):
    """llama.cpp reads these tensors; transformers' llama model has no place for them and dropped them
    without a word: the converted model was not the GGUF's."""
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", extra=extra)
    assert models.main(["from-gguf", "--gguf", str(gguf), "--output", str(tmp_path / "out")]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    values = sum(v.size for v in extra.values())
    assert last.startswith(f"culture-model: {gguf} holds tensor(s) {', '.join(extra)} ({values} values) that "
                           "transformers' llama model does not load")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.gguf"]  # no model, no staging folder


def test_a_gguf_rope_scaling_transformers_leaves_out_is_refused(tmp_path, capsys):
    """llama.cpp scales every position by llama.rope.scaling.*; transformers' llama config skipped the keys
    without a word, and the converted model placed every token elsewhere than the GGUF's."""
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", rope_scaling=("linear", 4.0))
    assert models.main(["from-gguf", "--gguf", str(gguf), "--output", str(tmp_path / "out")]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"culture-model: {gguf} sets rope scaling (llama.rope.scaling.type linear, factor 4.0) "
                           "that transformers' llama config leaves out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.gguf"]
    # no scaling as llama.cpp reads it ("none", or a factor of 1) converts as before
    for name, scaling in [("none", ("none", 4.0)), ("one", ("linear", 1.0))]:
        plain = write_tiny_gguf(tmp_path / f"{name}.gguf", rope_scaling=scaling)
        assert models.main(["from-gguf", "--gguf", str(plain), "--output", str(tmp_path / name)]) == 0


def test_a_killed_conversion_leaves_no_staging_folder_behind_the_next_run(ggufs, tmp_path, capsys):
    """A conversion killed while writing left its hidden staging folder (a whole model) and joined GGUF beside
    the output for ever; the next conversion of that output, holding its lock, removes them."""
    import subprocess
    import sys

    first, _ = ggufs
    out = tmp_path / "cache" / "tiny"
    parts = [tmp_path / "p1", tmp_path / "p2"]
    data = first.read_bytes()
    parts[0].write_bytes(data[:1000])
    parts[1].write_bytes(data[1000:])
    killed = (
        "import os, signal, sys\nfrom pathlib import Path\nfrom culture_tasks import models\n"
        "def die(gguf, into, label=None, reader=None):\n"
        "    (into / 'model.safetensors').write_bytes(b'half a model')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "models._save_converted = die\n"
        f"models.convert_gguf([Path({str(parts[0])!r}), Path({str(parts[1])!r})], Path({str(out)!r}))\n"
    )
    run = subprocess.run([sys.executable, "-c", killed], cwd=os.path.dirname(os.path.dirname(__file__)))
    assert run.returncode == -9
    left = sorted(p.name for p in out.parent.iterdir())
    assert "tiny.lock" in left and len([n for n in left if n.startswith(".tiny.")]) == 2  # staging + joined GGUF
    kept = [".tiny.backup_1", ".tiny2.converting.abcd_123"]  # the user's own, another output's
    for name in kept:
        (out.parent / name).mkdir()
    assert models.main(["from-gguf", "--gguf", *map(str, parts), "--output", str(out)]) == 0
    np.testing.assert_array_equal(_embedding(out), _gguf_embedding(first))
    assert sorted(p.name for p in out.parent.iterdir()) == [*kept, "tiny"]
    err = capsys.readouterr().err
    assert "removed .tiny.converting." in err and "removed .tiny.joining." in err


def test_an_output_weight_read_into_tied_embeddings_is_not_counted_as_left_out(ggufs):
    """transformers ties falcon's and bloom's output.weight to the input embeddings even where the GGUF holds
    one: it is read (into the shared tensor), so the file must not be refused as holding an unloaded tensor."""
    import gguf
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    first, _ = ggufs
    config = dict(vocab_size=263, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1)
    with torch.device("meta"):
        tied = LlamaForCausalLM(LlamaConfig(**config, tie_word_embeddings=True))
        untied = LlamaForCausalLM(LlamaConfig(**config, tie_word_embeddings=False))
    reader = gguf.GGUFReader(str(first))
    assert models._unloaded_tensors(reader, untied) == (0, [])
    assert models._unloaded_tensors(reader, tied) == (0, [])


def _made_by_an_earlier_version(folder, **marker):
    """Rewrite the folder's gguf_source.json as a culture-model before conversion formats wrote it."""
    stored = json.loads((folder / models.SOURCE_FILE).read_text())
    stored.pop("conversion_format", None)
    stored.update(marker)
    (folder / models.SOURCE_FILE).write_text(json.dumps(stored))


def test_a_cached_conversion_by_an_earlier_version_is_converted_again_a_current_one_reused(
        ggufs, tmp_path, monkeypatch, capsys):
    """A cached folder made before the current checks was reused as it was, though this version would refuse
    its GGUF or convert it otherwise; the cache's own folder is converted again (saying so), a current one reused."""
    first, _ = ggufs
    monkeypatch.setattr(models, "DEFAULT_CACHE", tmp_path / "cache")
    folder = tmp_path / "cache" / "tiny"
    assert models.main(["from-gguf", "--gguf", str(first)]) == 0
    stored = json.loads((folder / models.SOURCE_FILE).read_text())
    assert stored["conversion_format"] == models.CONVERSION_FORMAT
    assert stored["gguf_sha256"] == models.gguf_sha256([first]) and stored["gguf_files"] == ["tiny.gguf"]
    weights = folder / "model.safetensors"
    made = weights.stat()
    capsys.readouterr()
    assert models.main(["from-gguf", "--gguf", str(first)]) == 0  # current: reused, not rewritten
    assert (weights.stat().st_ino, weights.stat().st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    assert capsys.readouterr().err == ""

    for marker in ({}, {"conversion_format": 0}, {"conversion_format": "1"}, {"conversion_format": True}):
        _made_by_an_earlier_version(folder, **marker)
        made = weights.stat()
        assert models.main(["from-gguf", "--gguf", str(first)]) == 0
        assert weights.stat().st_ino != made.st_ino  # converted again
        np.testing.assert_array_equal(_embedding(folder), _gguf_embedding(first))
        assert json.loads((folder / models.SOURCE_FILE).read_text())["conversion_format"] == models.CONVERSION_FORMAT
        err = capsys.readouterr().err.splitlines()  # transformers' progress bars, and one line of ours
        (note,) = [line for line in err if "culture-model" in line]
        assert note.startswith(f"culture-model: {folder} was converted by an earlier culture-model (conversion "
                               f"format 0, this one {models.CONVERSION_FORMAT})")
        assert note.endswith("; converting it again")
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tiny"]


def test_a_cached_conversion_this_version_refuses_is_not_handed_out(tmp_path, monkeypatch, capsys):
    """Llama 3's rope_freqs: a conversion made before the check existed was handed out as the GGUF's model."""
    monkeypatch.setattr(models, "DEFAULT_CACHE", tmp_path / "cache")
    (tmp_path / "plain").mkdir()
    (tmp_path / "llama3").mkdir()
    plain = write_tiny_gguf(tmp_path / "plain" / "tiny.gguf")
    llama3 = write_tiny_gguf(tmp_path / "llama3" / "tiny.gguf", extra={"rope_freqs.weight": np.ones(4, np.float32)})
    folder = tmp_path / "cache" / "tiny"
    assert models.main(["from-gguf", "--gguf", str(plain)]) == 0  # as the earlier version saved llama3's file
    _made_by_an_earlier_version(folder, gguf_sha256=models.gguf_sha256([llama3]))
    capsys.readouterr()
    assert models.main(["from-gguf", "--gguf", str(llama3)]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"culture-model: {llama3} holds tensor(s) rope_freqs.weight")
    assert last.endswith(f"; {folder}, converted from this same file by an earlier culture-model, is not its "
                         "model: remove it")
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tiny"]  # left for its owner to remove


def test_a_named_output_converted_by_an_earlier_version_is_refused_until_overwrite(ggufs, tmp_path, monkeypatch,
                                                                                   capsys):
    """A folder the user named is not converted again unasked: one line naming it and the fix."""
    first, _ = ggufs
    folder = tmp_path / "mine"
    assert models.main(["from-gguf", "--gguf", str(first), "--output", str(folder)]) == 0
    _made_by_an_earlier_version(folder)
    weights = folder / "model.safetensors"
    made = weights.stat()
    capsys.readouterr()
    monkeypatch.setattr(models, "_save_converted", _no_conversion)
    assert models.main(["from-gguf", "--gguf", str(first), "--output", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"culture-model: {folder} was converted from this GGUF file by "
                                                   "an earlier culture-model (conversion format 0, this one "
                                                   f"{models.CONVERSION_FORMAT})")
    assert err.endswith("pass --overwrite to convert it again, or remove it\n")
    assert (weights.stat().st_ino, weights.stat().st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    monkeypatch.undo()
    assert models.main(["from-gguf", "--gguf", str(first), "--output", str(folder), "--overwrite"]) == 0
    assert weights.stat().st_ino != made.st_ino
    assert json.loads((folder / models.SOURCE_FILE).read_text())["conversion_format"] == models.CONVERSION_FORMAT


def test_a_conversion_by_a_later_version_is_refused_not_downgraded(ggufs, tmp_path, monkeypatch, capsys):
    first, _ = ggufs
    monkeypatch.setattr(models, "DEFAULT_CACHE", tmp_path / "cache")
    folder = tmp_path / "cache" / "tiny"
    assert models.main(["from-gguf", "--gguf", str(first)]) == 0
    _made_by_an_earlier_version(folder, conversion_format=models.CONVERSION_FORMAT + 1)
    capsys.readouterr()
    monkeypatch.setattr(models, "_save_converted", _no_conversion)
    assert models.main(["from-gguf", "--gguf", str(first)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"culture-model: {folder} was converted from this GGUF file by a later culture-model (conversion format "
        f"{models.CONVERSION_FORMAT + 1}, this one {models.CONVERSION_FORMAT})")
    assert "--overwrite" in err


def test_a_conversion_reads_the_gguf_header_once(ggufs, tmp_path, monkeypatch):
    """The shard, unloaded-tensor and rope-scaling checks each built a GGUFReader (seconds each for a large
    vocabulary); they share one."""
    import sys

    import gguf

    first, _ = ggufs
    made = []

    class Counting(gguf.GGUFReader):
        def __init__(self, *args, **kwargs):
            if sys._getframe(1).f_code.co_filename == models.__file__:  # transformers' own readers not counted
                made.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", Counting)
    models.convert_gguf(first, tmp_path / "model")
    assert len(made) == 1 and made[0].endswith("model.gguf")  # the file, read alone in a folder of its own


def test_name_and_output_together_are_refused(ggufs, tmp_path, monkeypatch, capsys):
    """--name names a folder under the cache; with --output it was ignored without a word."""
    first, _ = ggufs
    monkeypatch.setattr(models, "_save_converted", _no_conversion)
    with pytest.raises(SystemExit) as done:
        models.main(["from-gguf", "--gguf", str(first), "--name", "qwen", "--output", str(tmp_path / "out")])
    assert done.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "culture-model from-gguf: error: argument --output: not allowed with argument --name")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_tokenizer_beside_the_gguf_is_not_read_in_place_of_the_gguf_s_own(ggufs, tmp_path):
    """transformers reads a tokenizer.json found beside the GGUF file ahead of the GGUF's tokenizer: a stray
    4-token one became the converted model's tokenizer (263 rows embedded), with no error."""
    import shutil

    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import AutoTokenizer

    first, _ = ggufs
    alone = models.convert_gguf(first, tmp_path / "alone")
    folder = tmp_path / "beside"
    folder.mkdir()
    gguf = shutil.copy(first, folder / "tiny.gguf")
    Tokenizer(WordLevel({"[UNK]": 0, "a": 1, "b": 2, "c": 3}, unk_token="[UNK]")).save(str(folder / "tokenizer.json"))
    converted = models.convert_gguf(gguf, tmp_path / "converted")
    tokens = AutoTokenizer.from_pretrained(converted)
    assert len(tokens) == len(AutoTokenizer.from_pretrained(alone)) > 4
    assert tokens("hello world")["input_ids"] == AutoTokenizer.from_pretrained(alone)("hello world")["input_ids"]
    assert sorted(p.name for p in folder.iterdir()) == ["tiny.gguf", "tokenizer.json"]  # nothing left beside it


def test_a_tokenizer_larger_than_the_embedding_is_refused(ggufs, tmp_path, monkeypatch):
    # ids past the model's rows: an index error at the first rare token, or another token's row on some kernels
    import transformers
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    big = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel({f"t{i}": i for i in range(300)}, unk_token="t0")))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: big)
    with pytest.raises(models.ModelFileError) as err:
        models.convert_gguf(ggufs[0], tmp_path / "out")
    assert str(err.value) == (f"{ggufs[0]}: its tokenizer has 300 tokens, its model embeds 263; use a GGUF file "
                              "whose tokenizer is the model's")
    assert not (tmp_path / "out").exists()


def test_a_folder_converted_by_another_transformers_is_reused_with_a_line_saying_so(ggufs, tmp_path, capsys):
    # converting again would change config.json (and the fingerprint runs on the folder recorded); reused
    # without a word, a conversion by another release passed for this one's
    import transformers

    out = models.convert_gguf(ggufs[0], tmp_path / "model")
    capsys.readouterr()
    models.convert_gguf(ggufs[0], out)
    assert capsys.readouterr().err == ""  # this release's conversion: nothing to say
    source = json.loads((out / models.SOURCE_FILE).read_text())
    (out / models.SOURCE_FILE).write_text(json.dumps({**source, "transformers": "4.0.0"}))
    weights = (out / "model.safetensors").stat().st_mtime_ns
    assert models.convert_gguf(ggufs[0], out) == out
    assert capsys.readouterr().err == (f"culture-model: {out} was converted by transformers 4.0.0, this is "
                                       f"{transformers.__version__}; reused as it is (--overwrite converts it "
                                       "again)\n")
    assert (out / "model.safetensors").stat().st_mtime_ns == weights


def test_a_falcon_gguf_with_its_own_output_matrix_keeps_both_matrices(tmp_path):
    """transformers' config says tied for every Falcon GGUF but loads one with its own output.weight untied: the
    converted model keeps the input embedding and the output matrix the GGUF holds, each where it belongs."""
    from safetensors.numpy import load_file

    from tests.tiny_gguf import write_tiny_falcon_gguf

    (tmp_path / "src").mkdir()
    written = write_tiny_falcon_gguf(tmp_path / "src" / "falcon.gguf")
    folder = models.convert_gguf(tmp_path / "src" / "falcon.gguf", tmp_path / "model")
    assert json.loads((folder / "config.json").read_text())["tie_word_embeddings"] is False
    weights = load_file(folder / "model.safetensors")
    embedding = next(v for k, v in weights.items() if k.endswith("word_embeddings.weight"))
    assert np.array_equal(embedding, written["token_embd.weight"])
    assert np.array_equal(weights["lm_head.weight"], written["output.weight"])
