"""A model for the steps that run no forward pass (``bench_suite_overhead.py``): the tokenizer's own
architecture with random weights, in a folder named by the digest of the tokenizer's files, so
another tokenizer never reuses it (it would time the first tokenizer under the second's name).

    python -m benchmarks.small_model <tokenizer dir> [<root>]   # prints the model folder
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from culture_tasks.fingerprints import loaded_fingerprint


def small_model(tok: Path, root: Path) -> Path:
    """``root/gpu_checks_small_<key>``, built from ``tok``'s config and tokenizer unless it is there."""
    fingerprint = loaded_fingerprint(tok)  # of the files tok's config and tokenizer load from
    if fingerprint is None:
        raise FileNotFoundError(f"{tok}: no such folder; give the folder of a local tokenizer")
    key = fingerprint.split(":", 1)[1][:16]
    out = Path(root) / f"gpu_checks_small_{key}"
    if out.is_dir():
        return out
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    # built beside its place and renamed into it: a build killed half-way is never taken for a model
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=root))
    try:
        AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tok)).save_pretrained(building)
        AutoTokenizer.from_pretrained(tok).save_pretrained(building)
        building.chmod(0o755)  # mkdtemp's 0700 would lock other users of a shared TMPDIR out of it
        building.rename(out)
    except OSError:
        if not out.is_dir():  # not another process that built it first
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 2) or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    root = Path(argv[1]) if len(argv) == 2 else Path(os.environ.get("TMPDIR") or tempfile.gettempdir())
    try:
        print(small_model(Path(argv[0]), root))
    except FileNotFoundError as err:
        print(f"small_model: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
