"""Augmentation generation throughput: batched local generation against one request at a time.

    python -m benchmarks.bench_generation --model <dir> --device cuda --dtype bfloat16

Both sides use ``LocalGenerator`` on the step-1 prompts of the WVS seeds, sampling
``--paraphrases`` rewrites each; one-at-a-time is ``batch_size=1, n=1`` per request (an
endpoint called once per rewrite) and runs on the first ``--single`` requests only.
"""

from __future__ import annotations

import argparse
import time

import torch

from culture_tasks.survey.wvs import load_questions
from trainers.augment import PARAPHRASE_PROMPT
from trainers.generators import LocalGenerator


def _timed(generator, prompts, n, device):
    torch.cuda.synchronize() if device.startswith("cuda") else None
    start = time.perf_counter()
    replies = generator.complete(prompts, n)
    torch.cuda.synchronize() if device.startswith("cuda") else None
    seconds = time.perf_counter() - start
    tokens = sum(len(generator.tokenizer(r, add_special_tokens=False)["input_ids"]) for rs in replies for r in rs)
    return seconds, sum(len(rs) for rs in replies), tokens


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data-dir")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--paraphrases", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=500, help="sequences per generate() call when batched")
    p.add_argument("--single", type=int, default=40, help="requests timed one at a time")
    p.add_argument("--max-new-tokens", type=int, default=64)
    args = p.parse_args(argv)
    prompts = [PARAPHRASE_PROMPT.format(sentence=q.text) for q in load_questions(args.data_dir)]
    kw = dict(device=args.device, dtype=args.dtype, max_new_tokens=args.max_new_tokens)
    torch.manual_seed(0)
    batched = LocalGenerator(args.model, batch_size=args.batch_size, **kw)
    _timed(batched, prompts[:2], 2, args.device)  # warm-up
    s_b, seq_b, tok_b = _timed(batched, prompts, args.paraphrases, args.device)
    single = LocalGenerator(args.model, batch_size=1, **kw)
    s_1, seq_1, tok_1 = _timed(single, [prompts[i % len(prompts)] for i in range(args.single)], 1, args.device)
    print(f"model {args.model}  device {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}  "
          f"{args.dtype}  max_new_tokens {args.max_new_tokens}")
    print(f"{'mode':<16} {'sequences':>9} {'seconds':>8} {'seq/s':>8} {'tokens/s':>9}")
    print(f"{'batched':<16} {seq_b:>9} {s_b:>8.2f} {seq_b / s_b:>8.2f} {tok_b / s_b:>9.0f}")
    print(f"{'one at a time':<16} {seq_1:>9} {s_1:>8.2f} {seq_1 / s_1:>8.2f} {tok_1 / s_1:>9.0f}")
    print(f"speed-up (sequences/s): {(seq_b / s_b) / (seq_1 / s_1):.1f}x")


if __name__ == "__main__":
    main()
