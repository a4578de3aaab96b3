"""A model folder's fingerprint covers every byte; large files' digests are cached without ever serving a stale one."""

from __future__ import annotations

import hashlib
import json
import logging
import os

import pytest

from culture_tasks import fingerprints
from culture_tasks.fingerprints import FULL, SAMPLED, loaded_fingerprint, model_fingerprint


def _model(folder, size=5 << 20):
    folder.mkdir()
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "model.safetensors").write_bytes(bytes(size))
    return folder


def _poke(path, offset, byte=b"\x01"):
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(byte)


def test_full_fingerprint_is_the_hash_of_names_sizes_and_file_digests(tmp_path):
    """Computed by hand: sha256 over "name\\0size\\0sha256(bytes)\\0" per file in name order."""
    model = _model(tmp_path / "m", size=1000)
    h = hashlib.sha256()
    for name, data in (("config.json", b'{"a": 1}'), ("model.safetensors", bytes(1000))):
        h.update(f"{name}\0{len(data)}\0{hashlib.sha256(data).hexdigest()}\0".encode())
    assert model_fingerprint(model) == FULL + h.hexdigest() == loaded_fingerprint(model)


def test_a_change_in_the_middle_of_a_large_file_is_seen(tmp_path):
    """The earlier scheme read each large file's first and last MiB: an edit between them (one middle layer)
    left it unchanged; the full fingerprint changes."""
    model = _model(tmp_path / "m")
    full, sampled = model_fingerprint(model), model_fingerprint(model, SAMPLED)
    _poke(model / "model.safetensors", (5 << 20) // 2)
    assert model_fingerprint(model, SAMPLED) == sampled
    assert model_fingerprint(model) != full


def test_large_file_digest_is_cached_and_a_same_size_same_mtime_edit_is_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setenv(fingerprints.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(fingerprints, "CACHE_MIN_BYTES", 1 << 20)
    monkeypatch.setattr(fingerprints, "CACHE_SETTLE_NS", 0)
    weights = _model(tmp_path / "m") / "model.safetensors"
    calls = []
    real = fingerprints._hash
    monkeypatch.setattr(fingerprints, "_hash", lambda p, size: calls.append(p.name) or real(p, size))
    first = fingerprints.file_sha256(weights)
    assert first == hashlib.sha256(bytes(5 << 20)).hexdigest() and calls == ["model.safetensors"]
    assert len(list((tmp_path / "cache").iterdir())) == 1
    assert fingerprints.file_sha256(weights) == first and calls == ["model.safetensors"]  # this process's memo
    monkeypatch.setattr(fingerprints, "_MEMO", {})  # another process
    assert fingerprints.file_sha256(weights) == first and calls == ["model.safetensors"]  # the disk cache
    stat = weights.stat()
    _poke(weights, 3 << 20)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same size and modification time
    assert fingerprints.file_sha256(weights) != first and len(calls) == 2  # the status-change time moved


def test_a_freshly_written_file_is_not_cached(tmp_path, monkeypatch):
    """A filesystem clock coarser than a write's duration could give an edit the cached key: a file changed in the
    last seconds is hashed each time until it settles."""
    monkeypatch.setenv(fingerprints.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(fingerprints, "CACHE_MIN_BYTES", 1 << 20)
    fingerprints.file_sha256(_model(tmp_path / "m") / "model.safetensors")
    assert not (tmp_path / "cache").exists()


def test_a_damaged_cache_entry_is_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setenv(fingerprints.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(fingerprints, "CACHE_MIN_BYTES", 1 << 20)
    monkeypatch.setattr(fingerprints, "CACHE_SETTLE_NS", 0)
    weights = _model(tmp_path / "m") / "model.safetensors"
    right = fingerprints.file_sha256(weights)
    [entry] = (tmp_path / "cache").iterdir()
    entry.write_text(json.dumps({"size": 1, "sha256": "0" * 64}))
    monkeypatch.setattr(fingerprints, "_MEMO", {})
    assert fingerprints.file_sha256(weights) == right
    entry.write_text("{")
    monkeypatch.setattr(fingerprints, "_MEMO", {})
    assert fingerprints.file_sha256(weights) == right
    assert json.loads(entry.read_text())["sha256"] == right  # the damaged entry replaced


def test_a_run_stored_with_the_earlier_scheme_resumes_and_is_still_checked(tmp_path, caplog):
    """check_settings compares a stored sha256: (first and last MiB) fingerprint in its own scheme, with a warning;
    a changed model is still refused."""
    from culture_tasks.outputs import OutputError, check_settings

    model = _model(tmp_path / "m")
    stored = {"seed": 0, "model_fingerprint": model_fingerprint(model, SAMPLED),
              "checkpoints": {"USA": model_fingerprint(model, SAMPLED)}}
    given = {"seed": 0, "model_fingerprint": model_fingerprint(model), "checkpoints": {"USA": model_fingerprint(model)}}
    with caplog.at_level(logging.WARNING, logger="culture_tasks"):
        check_settings(stored, given, tmp_path / "run")
    assert "it is compared in that scheme, which cannot see a change inside a large file" in caplog.text
    _poke(model / "model.safetensors", 10)  # in the first MiB: the earlier scheme sees it
    with pytest.raises(OutputError, match="model_fingerprint: saved 'sha256:"):
        check_settings(stored, {"seed": 0, "model_fingerprint": model_fingerprint(model)}, tmp_path / "run")
    # a full fingerprint stored is compared as it is
    with pytest.raises(OutputError, match="model_fingerprint: saved 'sha256-full:"):
        check_settings({**given, "checkpoints": {}}, {**given, "model_fingerprint": model_fingerprint(model),
                                                     "checkpoints": {}}, tmp_path / "run")


def test_leaderboard_checks_a_recorded_earlier_scheme_fingerprint_in_its_scheme(tmp_path):
    from culture_tasks.leaderboard import fingerprint_changed

    model = _model(tmp_path / "m")
    recorded = loaded_fingerprint(model, SAMPLED)
    assert fingerprint_changed(str(model), recorded) == ""
    _poke(model / "model.safetensors", 10)
    assert fingerprint_changed(str(model), recorded) == (
        f"files differ from the fingerprint its run recorded ({recorded[:19]}...)")
    assert fingerprint_changed(str(model), "0123abc") is None  # a hub commit: nothing local to compare


def test_unknown_scheme_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown fingerprint scheme 'md5:'"):
        model_fingerprint(_model(tmp_path / "m"), "md5:")


def test_plain_hf_result_records_the_loaded_folders_fingerprints(tiny_model, data_root):
    """lm_eval merges --model_args into the tasks' metadata: each task records the fingerprint of the local model
    (and adapter) folder in its config, which the result file keeps, though `hf` records no local content."""
    from tests.lm_eval_helpers import evaluate

    out = evaluate(tiny_model, ["wvs_usa"], data_root, limit=2, metadata={"pretrained": str(tiny_model)})
    recorded = out["configs"]["wvs_usa"]["metadata"]["loaded_fingerprints"]
    assert recorded == {"pretrained": loaded_fingerprint(tiny_model)} and recorded["pretrained"].startswith(FULL)
    out = evaluate(tiny_model, ["wvs_usa"], data_root, limit=2, metadata={"pretrained": "org/hub-model"})
    assert "loaded_fingerprints" not in out["configs"]["wvs_usa"]["metadata"]  # a hub id: no local content
