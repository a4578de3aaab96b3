"""Fitness evaluations per second of the soft-prompt aligner: one batched generation against
the naive loop (one candidate, one item per forward pass), and model-FLOP utilisation.

    python benchmarks/bench_aligner.py --model llama3-8b --tokenizer <dir> --device cuda --dtype bfloat16
    python benchmarks/bench_aligner.py --model <tiny or real model dir>          # CPU smoke run

A fitness evaluation = one candidate soft prompt scored on all 24 VSM13 items. Both scorers are
timed, interleaved: shared stems (each group's common prefix once per candidate, its keys/values
reused) and full rows (every row in full, length-sorted batches). The position counts compare them
with rows batched in candidate order, the rows unpadded, and a full prefix tree (every shared prefix
at every level computed once: the floor of prefix reuse).
MFU counts 2 x non-embedding parameters x processed tokens (+ the LM head at the answer
positions) against --peak-tflops; its default is the dense bf16/fp16 peak of a known device
(``common.DENSE_HALF_PEAK_TFLOPS``: H100/H200 989, A100 312) in bfloat16 or float16 only: anywhere
else no % of peak is printed unless --peak-tflops names it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aligners.scoring import TaskScorer, common_prefix  # noqa: E402
from aligners.soft_prompt import SoftPromptSpace  # noqa: E402
from benchmarks.common import (device_line, half_precision_peak, load_hflm, model_parser,  # noqa: E402
                               non_embedding_params, sync)
from culture_tasks.paths import task_manager  # noqa: E402


def main() -> None:
    p = model_parser(__doc__)
    p.add_argument("--population", type=int, default=32)
    p.add_argument("--virtual-tokens", type=int, default=4)
    p.add_argument("--subspace-dim", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--naive-candidates", type=int, default=2, help="candidates timed in the naive loop")
    p.add_argument("--peak-tflops", type=float,
                   help="the device's dense peak in --dtype (default in bfloat16/float16: an H100/H200's 989, an A100's 312)")
    args = p.parse_args()
    peak = args.peak_tflops or half_precision_peak(args.device, args.dtype)

    model, lm = load_hflm(args, args.batch_size)
    tm = task_manager(data_dir=args.data_dir)
    scorers = {"shared stems": TaskScorer(lm, "vsm13_usa", tm),
               "full rows": TaskScorer(lm, "vsm13_usa", tm, shared_stems=False)}
    scorer = scorers["shared stems"]
    space = SoftPromptSpace(model.get_input_embeddings(), virtual_tokens=args.virtual_tokens,
                            subspace_dim=args.subspace_dim, seed=0, init="vocab")
    z = torch.rand(args.population, args.subspace_dim) * 2 - 1
    prompts = space.prompts(z)

    def generation(s):
        lls = s.option_loglikelihoods(prompts, args.batch_size)
        return [s.metrics(c)["vsm13_l1"] for c in lls]

    losses = {name: generation(s) for name, s in scorers.items()}  # warm-up, and the two give one search
    gap = max(abs(a - b) for a, b in zip(*losses.values()))
    times = {name: [] for name in scorers}
    for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits both alike
        for name, s in scorers.items():
            sync(args.device)
            start = time.perf_counter()
            generation(s)
            sync(args.device)
            times[name].append(time.perf_counter() - start)
    batched = {name: min(t) for name, t in times.items()}

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
    shared = sum(args.virtual_tokens + common_prefix(a, b) for a, b in zip(contexts, contexts[1:]))
    tree = tokens - shared * args.population
    hidden, vocab = model.config.hidden_size, model.config.vocab_size
    # model FLOPs of the work itself (every row unpadded, as the naive loop runs it): the same for both scorers
    flops = 2 * non_embedding_params(model) * tokens + 2 * hidden * vocab * n_items * args.population
    print(device_line(args))
    print(f"one generation: {args.population} candidates x {n_items} items = {args.population * n_items} sequences, "
          f"{tokens} tokens unpadded")
    print(f"stems: {', '.join(f'{len(g.items)} items share {g.stem}' for g in scorer.groups)}")
    print(f"positions per generation at batch {args.batch_size}: {counts['computed']} with shared stems "
          f"({_change(counts['computed'], tokens)}), {counts['no_stems']} full rows in length-sorted batches "
          f"({_change(counts['no_stems'], tokens)}), {counts['unsorted']} in candidate-order batches "
          f"({_change(counts['unsorted'], tokens)}), {tree} as a full prefix tree ({_change(tree, tokens)})")
    print(f"largest loss difference between the two scorers: {gap:.2e}")
    for name, seconds in batched.items():
        print(f"{name}: {seconds:.3f} s/generation (best of {args.repeats}; all: "
              f"{', '.join(f'{t:.3f}' for t in times[name])}), {args.population / seconds:.1f} fitness evaluations/s, "
              f"{flops / seconds / 1e12:.2f} TFLOP/s of useful work{_of_peak(flops / seconds, peak)}")
    print(f"shared stems vs full rows: {batched['full rows'] / batched['shared stems']:.2f}x")
    print(f"naive loop (1 candidate x 1 item per forward): {naive:.3f} s/generation "
          f"(timed on {args.naive_candidates} candidates), {args.population / naive:.2f} fitness evaluations/s")
    print(f"speed-up over the naive loop: {naive / batched['shared stems']:.1f}x")


def _of_peak(rate: float, peak_tflops: float | None) -> str:
    if peak_tflops is None:
        return " (no peak known for this device and dtype: --peak-tflops gives the % of peak)"
    return f" = {rate / (peak_tflops * 1e12) * 100:.1f}% of {peak_tflops:g}"


def _change(n: int, needed: int) -> str:
    return f"{(n - needed) / needed * 100:+.1f}% vs unpadded"


if __name__ == "__main__":
    main()
