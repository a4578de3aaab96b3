"""Documents per second for the whole CultureLLM suite through lm-eval (batched log-likelihoods
of the option letters), beside the upstream protocol on the same model and documents (one
`generate` call per example, one at a time), and their ratio.

    python benchmarks/bench_suite.py --model llama3-8b --tokenizer <dir> --device cuda --dtype bfloat16 --limit 20
    python benchmarks/bench_suite.py --model llama3-8b --tokenizer <dir> --device cuda --dtype bfloat16 --limit 0 --batch-size auto:4
    python benchmarks/bench_suite.py --model <model dir> --limit 2                      # CPU smoke run

``--limit 0`` runs every document (the whole suite).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import device_line, leaf_tasks, load_hflm, model_parser, sync  # noqa: E402
from culture_tasks.classification import doc_to_text_gen  # noqa: E402
from culture_tasks.paths import task_manager  # noqa: E402


def main() -> None:
    p = model_parser(__doc__)
    p.add_argument("--limit", type=int, default=5, help="documents per task (58 tasks); 0: all")
    p.add_argument("--batch-size", default="32",
                   help="a number, or lm-eval's auto / auto:N (largest size that fits, found again N times)")
    p.add_argument("--upstream-docs-per-task", type=int, default=1, help="documents per task in the upstream loop (0: skip it)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--max-batch-size", type=int, default=64, help="the largest size lm-eval's auto may choose (its default 64)")
    p.add_argument("--lm", choices=["hf", "hf-prompt"], default="hf",
                   help="lm-eval's hf, or hf-prompt (batched tokenisation, LM head on the continuation's positions only)")
    args = p.parse_args()

    import lm_eval
    from lm_eval.tasks import get_task_dict

    batch_size = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
    model, lm = load_hflm(args, batch_size, args.lm, args.max_batch_size)
    manager = task_manager(data_dir=args.data_dir)

    marks = _time_requests(lm, args.device)
    sync(args.device)
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(model=lm, tasks=["culturellm"], limit=args.limit or None, task_manager=manager,
                                  bootstrap_iters=0)
    sync(args.device)
    suite_s = time.perf_counter() - start
    n_docs = sum(v["effective"] for v in out["n-samples"].values())
    n_all = sum(v["original"] for v in out["n-samples"].values())
    print(device_line(args))
    part = "the whole suite" if n_docs == n_all else f"of {n_all}: --limit {args.limit} per task, not the whole suite"
    print(f"suite via lm-eval: {n_docs} documents ({part}) in {suite_s:.1f} s = {n_docs / suite_s:.1f} docs/s "
          f"(--model {args.lm}, batch size {args.batch_size}{_chosen(lm)}, task loading included){_peak(args.device)}", flush=True)
    if marks:
        print(f"  of which: loading and building requests {marks[0] - start:.1f} s, request loop "
              f"{marks[-1] - marks[0]:.1f} s, scoring after it {start + suite_s - marks[-1]:.1f} s", flush=True)
    if args.upstream_docs_per_task == 0:
        return

    tasks = get_task_dict(["culturellm"], manager)
    leaves = list(leaf_tasks(tasks))
    docs = [doc for t in leaves for doc in list(t.test_docs())[: args.upstream_docs_per_task]]
    sync(args.device)
    start = time.perf_counter()
    with torch.no_grad():
        for doc in docs:
            ids = lm.tokenizer(doc_to_text_gen(doc), return_tensors="pt").input_ids.to(model.device)
            model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=False,
                           pad_token_id=lm.tokenizer.eos_token_id)
    sync(args.device)
    upstream_s = time.perf_counter() - start

    print(f"upstream protocol: {len(docs)} documents in {upstream_s:.1f} s = {len(docs) / upstream_s:.2f} docs/s "
          f"(one generate of up to {args.max_new_tokens} tokens per document)")
    print(f"ratio: {(n_docs / suite_s) / (len(docs) / upstream_s):.1f}x")


def _time_requests(lm, device: str) -> list:
    """Wraps ``lm.loglikelihood`` to record when the request loop starts and ends (the rest of the
    suite's time is loading and tokenising before it and scoring after it)."""
    marks, inner = [], lm.loglikelihood

    def timed(requests, *a, **kw):
        sync(device)
        marks.append(time.perf_counter())
        result = inner(requests, *a, **kw)
        sync(device)
        marks.append(time.perf_counter())
        return result

    lm.loglikelihood = timed
    return marks


def _peak(device: str) -> str:
    """The peak GPU memory torch allocated, the figure an out-of-memory is judged against."""
    return f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.startswith("cuda") else ""


def _chosen(lm) -> str:
    """The sizes lm-eval's ``auto`` detection settled on, per part of the longest-first requests."""
    return f": {lm.batch_sizes}" if getattr(lm, "batch_sizes", None) else ""


if __name__ == "__main__":
    main()
