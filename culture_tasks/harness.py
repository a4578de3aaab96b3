"""lm-eval's own command line with this project's ``hf-prompt`` model registered.

``python -m culture_tasks.harness <lm_eval arguments>`` is ``lm_eval <lm_eval arguments>`` plus
``--model hf-prompt`` (``culture_tasks.hf_prompt``): batched generation from prompt-tuning
adapters that gives the one-at-a-time answers.

Three checks more, in one line before the model loads. A local ``peft=`` adapter fits the local ``pretrained=``
model (``check_peft_fits``). Boolean ``--model_args`` of any model read strictly
(``hf_prompt.strict_booleans``: lm-eval passes ``add_bos_token=no`` on as the string "no", which Python reads
as true). And lm-eval's ``--use_cache <path>`` keeps each request's answer under a hash of the request alone,
so a run with another model, adapter or dtype read the first run's answers as its own: the first run stores
what the answers depend on in ``<path>.settings.json``, and a later run with other settings stops
(``check_cache``); a run started while another uses the cache stops too (``<path>.lock``, held to the run's end).
"""

from __future__ import annotations

import functools
import glob
import json
import sys
from pathlib import Path

from culture_tasks import provenance
from culture_tasks.fingerprints import folder_fingerprints
from culture_tasks.hf_prompt import strict_booleans  # (importing it registers hf-prompt with lm-eval)
from culture_tasks.models import ModelFileError, check_adapter_fits
from culture_tasks.outputs import (OutputError, OutputLock, error_line, load_settings, main_process, save_settings,
                                   settings_differences)

SETTINGS_SUFFIX = ".settings.json"


class HarnessError(ValueError):
    """A model argument or ``--use_cache`` file that cannot be used as given (one line, before the model loads)."""


def cache_settings(model: str, model_args, batch_size, device) -> dict:
    """What the answers of a run depend on: the model class and its arguments (all but ``token_cache=``, which
    changes no number), the local model, adapter and tokenizer folders by content (``fingerprints.folder_fingerprints``:
    lm-eval keys answers by the request text, not its token ids), and unless the model runs in float32 (whose
    scores are batch-invariant, tested: a run stopped for memory resumes at a smaller batch) the batch size and
    device (with the kernels: ``provenance.rounding_settings``), which move half-precision scores."""
    from lm_eval.utils import simple_parse_args_string

    args = simple_parse_args_string(model_args) if isinstance(model_args, str) else dict(model_args or {})
    args.pop("token_cache", None)
    folders = folder_fingerprints(args)
    scoring = provenance.rounding_settings(str(args.get("dtype")).removeprefix("torch."), str(batch_size), str(device))
    return json.loads(json.dumps({"model": model, "model_args": args, "folders": folders,
                                  **scoring}, default=str))


def check_cache(use_cache: str, settings: dict) -> None:
    """Store ``settings`` beside a new cache; refuse a cache made with other settings, or with none recorded
    (a record whose cache files are gone binds nothing: it is replaced)."""
    record = Path(use_cache + SETTINGS_SUFFIX)
    # lm-eval's file per process; the name escaped: "answers[1]" as a pattern matched answers1_rank0.db only, so a
    # cache of another model's answers was found empty and its record replaced
    made = sorted(Path(use_cache).parent.glob(glob.escape(Path(use_cache).name) + "_rank*.db"))
    saved = load_settings(record, error=HarnessError) if made else None
    if saved is None:
        if made:
            raise HarnessError(f"--use_cache {use_cache}: {made[0]} holds answers without a record of the model and "
                             f"settings that gave them ({record}); delete it, or give another --use_cache path")
        if main_process():
            save_settings(record, settings)
        return
    diff = settings_differences(saved, settings)
    if diff:
        raise HarnessError(f"--use_cache {use_cache}: its answers are of other settings ({'; '.join(diff)}); run with "
                         f"those, or give another --use_cache path")


def strict_model_args(model: str, model_args):
    """``model_args`` (the command line's mapping) with the model class's boolean arguments read strictly; as given
    for a model whose class cannot be imported here (an optional backend: lm-eval names what is missing)."""
    from lm_eval.api.registry import get_model

    if not isinstance(model_args, dict):
        return model_args
    try:
        cls = get_model(model)
    except (ImportError, ValueError):
        return model_args
    try:
        return strict_booleans(cls, model_args, who=f"--model {model}")
    except ValueError as err:
        raise HarnessError(str(err)) from None


def check_peft_fits(model_args) -> None:
    """A local ``peft=`` adapter fits the local ``pretrained=`` model (``models.check_adapter_fits``): one made on
    another base model failed with a traceback of size mismatches once the model had loaded, or, a soft prompt,
    at the first request."""
    from lm_eval.utils import simple_parse_args_string

    args = simple_parse_args_string(model_args) if isinstance(model_args, str) else dict(model_args or {})
    model, peft = args.get("pretrained"), args.get("peft")
    if not (isinstance(model, str) and isinstance(peft, str) and Path(model, "config.json").is_file()
            and Path(peft).is_dir()):
        return
    try:
        check_adapter_fits(peft, model, f"pretrained={model}", f"give peft= an adapter made on {model}")
    except ModelFileError as err:
        raise HarnessError(f"--model_args peft=: {err}") from None


def checked(evaluate):
    """``simple_evaluate`` that reads boolean model arguments strictly, checks a local adapter against its model
    (``check_peft_fits``) and runs ``check_cache`` where ``use_cache`` is given, all before the model loads. The
    cache is locked from its check to the run's end: lm-eval writes its answer file only once the model has
    loaded, so a second run started meanwhile found no answers, replaced the record with its own settings and
    then read the first run's answers (or wrote its own among them)."""
    @functools.wraps(evaluate)
    def run(*args, **kwargs):
        if isinstance(kwargs.get("model"), str):
            kwargs["model_args"] = strict_model_args(kwargs["model"], kwargs.get("model_args"))
            check_peft_fits(kwargs.get("model_args"))
            if kwargs.get("use_cache"):
                with OutputLock.for_file(Path(kwargs["use_cache"]), HarnessError):
                    check_cache(kwargs["use_cache"], cache_settings(kwargs["model"], kwargs.get("model_args"),
                                                                    kwargs.get("batch_size"), kwargs.get("device")))
                    return evaluate(*args, **kwargs)
        return evaluate(*args, **kwargs)

    return run


def main() -> None:
    import lm_eval
    from lm_eval.__main__ import cli_evaluate

    original = lm_eval.simple_evaluate  # the command line imports it from lm_eval when it runs
    lm_eval.simple_evaluate = checked(original)
    try:
        cli_evaluate()
    except (HarnessError, OutputError) as err:
        print(error_line("culture-eval", err), file=sys.stderr)
        sys.exit(2)
    finally:
        lm_eval.simple_evaluate = original


if __name__ == "__main__":
    main()
