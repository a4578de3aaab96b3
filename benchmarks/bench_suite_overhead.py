"""The CultureLLM suite's time outside the model: loading the tasks, building the requests, and
tokenising them, lm-eval's way (``HFLM``: one request at a time, context encoded twice per option)
against ``hf-prompt``'s (each distinct string once, many per tokenizer call), and ``hf-prompt`` with
its on-disk token cache (``token_cache=DIR``: first run, then a second process's view). No forward pass runs,
so a small model with the tokenizer of interest is enough:

    python benchmarks/bench_suite_overhead.py --model <SmolLM2 dir>
    python benchmarks/bench_suite_overhead.py --model <any small model> --tokenizer <Llama-3 tokenizer dir>

``--limit N`` takes N documents per task (default: all 66,672); ``--tasks`` other tasks or groups than the
whole suite.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import leaf_tasks, model_parser  # noqa: E402
from culture_tasks.paths import task_manager  # noqa: E402


def main() -> None:
    p = model_parser(__doc__)
    p.add_argument("--limit", type=int, default=0, help="documents per task; 0: all")
    p.add_argument("--tasks", default="culturellm",
                   help="comma-separated lm-eval task or group names (default: the whole suite); one culture "
                        "(culturellm_english) is a quick check of the script")
    args = p.parse_args()

    from lm_eval.tasks import get_task_dict
    from transformers import AutoTokenizer

    from culture_tasks.hf_prompt import HFPromptLM

    start = time.perf_counter()
    tasks = list(leaf_tasks(get_task_dict(args.tasks.split(","), task_manager(data_dir=args.data_dir))))
    loaded = time.perf_counter()
    for task in tasks:
        task.build_all_requests(limit=args.limit or None, rank=0, world_size=1)
    built = time.perf_counter()
    pairs = [inst.args for task in tasks for inst in task.instances]

    tok = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
    lm = HFPromptLM(pretrained=args.model, tokenizer=tok, device=args.device, dtype=args.dtype, batch_size=1)
    start_one = time.perf_counter()
    one = [lm._encode_pair(context, continuation) for context, continuation in pairs]
    one_s = time.perf_counter() - start_one
    start_many = time.perf_counter()
    many = lm.encode_pairs(pairs)
    many_s = time.perf_counter() - start_many
    if many != one:
        raise SystemExit("batched tokenisation differs from lm-eval's _encode_pair")
    with tempfile.TemporaryDirectory() as cache:
        timings = []
        for _ in ("cold", "warm"):  # a new model object each time: the warm run reads the shards from disk
            cached_lm = HFPromptLM(pretrained=args.model, tokenizer=tok, device=args.device, dtype=args.dtype,
                                   batch_size=1, token_cache=cache)
            start_cached = time.perf_counter()
            if cached_lm.encode_pairs(pairs) != one:
                raise SystemExit("token-cache ids differ from lm-eval's _encode_pair")
            timings.append(time.perf_counter() - start_cached)
        cache_mb = sum(f.stat().st_size for f in Path(cache).rglob("*.npz")) / 2**20

    docs = sum(len(task.eval_docs) if not args.limit else min(args.limit, len(task.eval_docs)) for task in tasks)
    distinct = len({s for c, k in pairs for s in (c, c + k)})
    tokens = sum(len(c) + len(k) for c, k in one)
    print(f"cpu: {os.cpu_count()} cores visible, torch threads {__import__('torch').get_num_threads()}; "
          f"tokenizer {args.tokenizer or args.model}")
    print(f"{len(tasks)} tasks, {docs} documents, {len(pairs)} log-likelihood requests, {tokens} request tokens")
    print(f"loading the tasks (datasets, checks): {loaded - start:.1f} s")
    print(f"building the requests: {built - loaded:.1f} s")
    print(f"tokenising, lm-eval (HFLM._encode_pair, {2 * len(pairs)} tokenizer calls): {one_s:.1f} s")
    print(f"tokenising, hf-prompt ({distinct} distinct strings, batches of up to 4096): {many_s:.1f} s "
          f"({one_s / many_s:.1f}x), the same token ids")
    print(f"tokenising, hf-prompt token_cache= first run (encode + write {cache_mb:.0f} MiB): {timings[0]:.1f} s; "
          f"next run (read): {timings[1]:.1f} s ({one_s / timings[1]:.0f}x lm-eval, {many_s / timings[1]:.1f}x batched), "
          "the same token ids")
    print_probe_windows(lm, many)


def print_probe_windows(lm, encoded) -> None:
    """The logits window ``hf-prompt`` gives lm-eval's ``batch_size=auto`` probe at each batch size
    (the widest any batch of that size can hold) against the widest real batch in lm-eval's own
    batching from the longest request, and the width of the longest row (``hf``: every position)."""
    lm._row_lengths, lm._longest_continuation = lm.row_lengths(encoded), max(len(k) for _, k in encoded)
    lengths = lm._row_lengths
    for batch in (16, 32, 64, 128):
        real = max(lengths[i] - lengths[min(i + batch, len(lengths)) - 1] for i in range(0, len(lengths), batch))
        print(f"logits window at batch {batch}: probe {lm.probe_window(batch, lengths[0])} positions, widest real batch "
              f"{real + lm._longest_continuation} (from the longest request), longest row {lengths[0]} (hf: all)")


if __name__ == "__main__":
    main()
