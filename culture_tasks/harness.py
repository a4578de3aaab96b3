"""lm-eval's own command line with this project's ``hf-prompt`` model registered.

``python -m culture_tasks.harness <lm_eval arguments>`` is ``lm_eval <lm_eval arguments>`` plus
``--model hf-prompt`` (``culture_tasks.hf_prompt``): batched generation from prompt-tuning
adapters that gives the one-at-a-time answers.

One check more: lm-eval's ``--use_cache <path>`` keeps each request's answer under a hash of the request
alone, so a run with another model, adapter or dtype read the first run's answers as its own. The first run
stores what the answers depend on in ``<path>.settings.json``; a later run with other settings stops in one
line before the model loads (``check_cache``).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import culture_tasks.hf_prompt  # noqa: F401  (registers hf-prompt with lm-eval)
from culture_tasks.fingerprints import loaded_fingerprint
from culture_tasks.outputs import load_settings, main_process, save_settings, settings_differences
from culture_tasks.task import MODEL_FOLDER_ARGS

SETTINGS_SUFFIX = ".settings.json"


class CacheError(ValueError):
    """An ``--use_cache`` file whose answers are of another model or settings."""


def cache_settings(model: str, model_args, batch_size, device) -> dict:
    """What the answers of a run depend on: the model class and its arguments (all but ``token_cache=``, which
    changes no number), local model and adapter folders by content, and unless the model runs in float32 (whose
    scores are batch-invariant, tested: a run stopped for memory resumes at a smaller batch) the batch size and
    device, which move half-precision scores."""
    from lm_eval.utils import simple_parse_args_string

    args = simple_parse_args_string(model_args) if isinstance(model_args, str) else dict(model_args or {})
    args.pop("token_cache", None)
    folders = {k: loaded_fingerprint(args[k]) for k in MODEL_FOLDER_ARGS if isinstance(args.get(k), str)}
    scoring = {} if str(args.get("dtype")).removeprefix("torch.") == "float32" else {
        "batch_size": str(batch_size), "device": str(device)}
    return json.loads(json.dumps({"model": model, "model_args": args, "folders": {k: v for k, v in folders.items() if v},
                                  **scoring}, default=str))


def check_cache(use_cache: str, settings: dict) -> None:
    """Store ``settings`` beside a new cache; refuse a cache made with other settings, or with none recorded
    (a record whose cache files are gone binds nothing: it is replaced)."""
    record = Path(use_cache + SETTINGS_SUFFIX)
    made = sorted(Path(use_cache).parent.glob(Path(use_cache).name + "_rank*.db"))  # lm-eval's file per process
    saved = load_settings(record, error=CacheError) if made else None
    if saved is None:
        if made:
            raise CacheError(f"--use_cache {use_cache}: {made[0]} holds answers without a record of the model and "
                             f"settings that gave them ({record}); delete it, or give another --use_cache path")
        if main_process():
            save_settings(record, settings)
        return
    diff = settings_differences(saved, settings)
    if diff:
        raise CacheError(f"--use_cache {use_cache}: its answers are of other settings ({'; '.join(diff)}); run with "
                         f"those, or give another --use_cache path")


def checking_cache(evaluate):
    """``simple_evaluate`` that runs ``check_cache`` first where ``use_cache`` is given."""
    @functools.wraps(evaluate)
    def run(*args, **kwargs):
        if kwargs.get("use_cache") and isinstance(kwargs.get("model"), str):
            check_cache(kwargs["use_cache"], cache_settings(kwargs["model"], kwargs.get("model_args"),
                                                            kwargs.get("batch_size"), kwargs.get("device")))
        return evaluate(*args, **kwargs)

    return run


def main() -> None:
    import lm_eval
    from lm_eval.__main__ import cli_evaluate

    original = lm_eval.simple_evaluate  # the command line imports it from lm_eval when it runs
    lm_eval.simple_evaluate = checking_cache(original)
    try:
        cli_evaluate()
    except CacheError as err:
        print(f"culture-eval: {err}", file=sys.stderr)
        sys.exit(2)
    finally:
        lm_eval.simple_evaluate = original


if __name__ == "__main__":
    main()
