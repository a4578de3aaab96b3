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

from benchmarks.common import device_line
from culture_tasks.survey.wvs import load_questions
from trainers.augment import PARAPHRASE_PROMPT
from trainers.generators import LocalGenerator


def _count_new_tokens(generator) -> dict[str, int]:
    """Wraps the generator's ``model.generate`` to count the new positions of each call: ``real``, each
    row's tokens up to and including its first end-of-sequence token, and ``computed``, every row
    to the batch's longest (a batch runs until its last row stops; re-encoding the replies'
    text counts neither)."""
    counts = {"real": 0, "computed": 0}
    inner = generator.model.generate
    eos = generator.model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}

    def generate(*args, input_ids=None, **kwargs):
        out = inner(*args, input_ids=input_ids, **kwargs)
        new = out[:, input_ids.shape[1]:]
        for row in new.tolist():
            counts["real"] += next((k + 1 for k, token in enumerate(row) if token in stops), len(row))
        counts["computed"] += new.numel()
        return out

    generator.model.generate = generate
    return counts


def _timed(generator, prompts, n, device):
    counts = _count_new_tokens(generator)
    try:
        torch.cuda.synchronize() if device.startswith("cuda") else None
        start = time.perf_counter()
        replies = generator.complete(prompts, n)
        torch.cuda.synchronize() if device.startswith("cuda") else None
        seconds = time.perf_counter() - start
    finally:
        del generator.model.generate  # the model's own method again
    return seconds, sum(len(rs) for rs in replies), counts["real"], counts["computed"]


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
    s_b, seq_b, tok_b, pos_b = _timed(batched, prompts, args.paraphrases, args.device)
    single = LocalGenerator(args.model, batch_size=1, **kw)
    s_1, seq_1, tok_1, pos_1 = _timed(single, [prompts[i % len(prompts)] for i in range(args.single)], 1, args.device)
    print(f"{device_line(args)}, max_new_tokens {args.max_new_tokens}")
    print("tokens/s: generated tokens (each reply to its end-of-sequence token); positions/s: with the rows "
          "that stopped early carried to their batch's longest")
    print(f"{'mode':<16} {'sequences':>9} {'seconds':>8} {'seq/s':>8} {'tokens/s':>9} {'positions/s':>11}")
    print(f"{'batched':<16} {seq_b:>9} {s_b:>8.2f} {seq_b / s_b:>8.2f} {tok_b / s_b:>9.0f} {pos_b / s_b:>11.0f}")
    print(f"{'one at a time':<16} {seq_1:>9} {s_1:>8.2f} {seq_1 / s_1:>8.2f} {tok_1 / s_1:>9.0f} {pos_1 / s_1:>11.0f}")
    print(f"speed-up (sequences/s): {(seq_b / s_b) / (seq_1 / s_1):.1f}x")


if __name__ == "__main__":
    main()
