"""Fitness evaluations per second of the soft-prompt aligner: one batched generation against
the naive loop (one candidate, one item per forward pass), and model-FLOP utilisation.

    python benchmarks/bench_aligner.py --model llama3-8b --tokenizer <dir> --device cuda --dtype bfloat16
    python benchmarks/bench_aligner.py --model <tiny or real model dir>          # CPU smoke run

A fitness evaluation = one candidate soft prompt scored on all 24 VSM13 items. The token counts
compare the positions the batches run (length-sorted batches) with rows batched in candidate order
and with the rows unpadded; "prefix tree" is what a scorer reusing the KV cache of prompt prefixes
shared by several items (once per candidate) would still run.
MFU counts 2 x non-embedding parameters x processed tokens (+ the LM head at the answer
positions) against --peak-tflops (H100 SXM dense bf16: 989).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aligners.scoring import TaskScorer  # noqa: E402
from aligners.soft_prompt import SoftPromptSpace  # noqa: E402
from benchmarks.common import device_line, load_hflm, model_parser, non_embedding_params, sync  # noqa: E402
from culture_tasks.paths import task_manager  # noqa: E402


def main() -> None:
    p = model_parser(__doc__)
    p.add_argument("--population", type=int, default=32)
    p.add_argument("--virtual-tokens", type=int, default=4)
    p.add_argument("--subspace-dim", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--naive-candidates", type=int, default=2, help="candidates timed in the naive loop")
    p.add_argument("--peak-tflops", type=float, default=989.0)
    args = p.parse_args()

    model, lm = load_hflm(args, args.batch_size)
    scorer = TaskScorer(lm, "vsm13_usa", task_manager(data_dir=args.data_dir))
    space = SoftPromptSpace(model.get_input_embeddings().weight, virtual_tokens=args.virtual_tokens,
                            subspace_dim=args.subspace_dim, seed=0, init="vocab")
    z = torch.rand(args.population, args.subspace_dim) * 2 - 1
    prompts = space.prompts(z)

    def generation():
        lls = scorer.option_loglikelihoods(prompts, args.batch_size)
        return [scorer.metrics(c)["vsm13_l1"] for c in lls]

    generation()  # warm-up
    sync(args.device)
    start = time.perf_counter()
    for _ in range(args.repeats):
        generation()
    sync(args.device)
    batched = (time.perf_counter() - start) / args.repeats

    embed = model.get_input_embeddings()
    with torch.no_grad():
        sync(args.device)
        start = time.perf_counter()
        for c in range(args.naive_candidates):
            for item in scorer.items:
                ids = torch.tensor([item.context], device=embed.weight.device)
                e = torch.cat([prompts[c:c + 1].to(embed.weight), embed(ids)], dim=1)
                model(inputs_embeds=e).logits[0, -1].float().log_softmax(-1)[item.option_tokens].tolist()
        sync(args.device)
    naive = (time.perf_counter() - start) / args.naive_candidates * args.population

    n_items = len(scorer.items)
    tokens = sum(args.virtual_tokens + len(i.context) for i in scorer.items) * args.population
    counts = scorer.token_counts(args.population, args.batch_size, args.virtual_tokens)
    contexts = sorted(i.context for i in scorer.items)
    # the trie of [soft prompt | context] rows: each row adds what it does not share with its sorted neighbour
    shared = sum(args.virtual_tokens + _common_prefix(a, b) for a, b in zip(contexts, contexts[1:]))
    tree = tokens - shared * args.population
    hidden, vocab = model.config.hidden_size, model.config.vocab_size
    flops = 2 * non_embedding_params(model) * tokens + 2 * hidden * vocab * n_items * args.population
    print(device_line(args))
    print(f"one generation: {args.population} candidates x {n_items} items = {args.population * n_items} sequences, "
          f"{tokens} tokens")
    print(f"tokens per generation: {counts['computed']} computed in length-sorted batches of {args.batch_size} "
          f"({_extra(counts['computed'], tokens)}), {counts['unsorted']} in candidate-order batches "
          f"({_extra(counts['unsorted'], tokens)}), {tokens} unpadded, {tree} as a prefix tree "
          f"({(tokens - tree) / tokens * 100:.1f}% fewer than unpadded)")
    print(f"batched: {batched:.3f} s/generation, {args.population / batched:.1f} fitness evaluations/s, "
          f"MFU {flops / batched / (args.peak_tflops * 1e12) * 100:.1f}% of {args.peak_tflops:.0f} TFLOP/s")
    print(f"naive loop (1 candidate x 1 item per forward): {naive:.3f} s/generation "
          f"(timed on {args.naive_candidates} candidates), {args.population / naive:.2f} fitness evaluations/s")
    print(f"speed-up: {naive / batched:.1f}x")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _extra(n: int, needed: int) -> str:
    return f"+{(n - needed) / needed * 100:.1f}% padding"


if __name__ == "__main__":
    main()
