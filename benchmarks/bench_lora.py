"""LoRA training throughput and peak memory, through the trainer's own Trainer set-up.

    python -m benchmarks.bench_lora --model llama3-8b --tokenizer <dir> --device cuda --steps 20

Real examples (WVS seeds + an augmented set, labelled with one country's answers) are tokenised
as the trainer does; ``llama3-8b`` is Llama-3-8B's architecture with random weights (the real
cost). Tokens/s counts non-padding tokens over the steps after the warm-up.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from transformers import AutoTokenizer, TrainerCallback

from benchmarks.common import load_model
from trainers.examples import build_examples
from trainers.lora import LoraTrainConfig, answer_only_collator, encode_for, make_trainer


class _Clock(TrainerCallback):
    def __init__(self):
        self.times = []

    def on_step_end(self, args, state, control, **kwargs):
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        self.times.append(time.perf_counter())


class _CountingCollator:
    def __init__(self, tokenizer):
        self.collate = answer_only_collator(tokenizer)
        self.tokens, self.padded = [], []

    def __call__(self, batch):
        out = self.collate(batch)
        self.tokens.append(int(out["attention_mask"].sum()))
        self.padded.append(out["input_ids"].numel())
        return out


def run(args, batch_size: int, checkpointing: bool) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    rows = build_examples(args.culture, questions_file=args.questions, data_dir=args.data_dir).rows
    torch.cuda.reset_peak_memory_stats() if torch.cuda.is_available() else None
    model = load_model(args.model, args.device, "bfloat16" if args.device.startswith("cuda") else "float32")
    with tempfile.TemporaryDirectory() as out:
        cfg = LoraTrainConfig(model=args.model, data=[], output=out, batch_size=batch_size, max_steps=args.steps,
                              gradient_checkpointing=checkpointing, rank=args.rank, alpha=2 * args.rank,
                              logging_steps=10_000, save_steps=10_000, chat_template=True)
        encoded, _, _ = encode_for(cfg, model, tokenizer, rows)
        collator = _CountingCollator(tokenizer)
        trainer = make_trainer(cfg, model, tokenizer, encoded, collator)
        clock = _Clock()
        trainer.add_callback(clock)
        trainer.train()
    w = args.warmup
    seconds = clock.times[-1] - clock.times[w - 1]
    # the Trainer collates each step's batch before that step; steps w+1..N used batches w..N-1
    tokens = sum(collator.tokens[w:len(clock.times)])
    padded = sum(collator.padded[w:len(clock.times)])
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    del trainer, model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return {"batch": batch_size, "checkpointing": checkpointing, "steps": len(clock.times) - w,
            "s_per_step": seconds / (len(clock.times) - w), "tokens_per_s": tokens / seconds,
            "padded_tokens_per_s": padded / seconds, "peak_gib": peak}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="llama3-8b")
    p.add_argument("--tokenizer", required=True, help="tokenizer folder (with a chat template)")
    p.add_argument("--culture", default="english")
    p.add_argument("--questions", help="augmented questions (default: seeds only)")
    p.add_argument("--data-dir")
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--configs", default="16:1,16:0,64:1", help="batch:checkpointing pairs")
    args = p.parse_args(argv)
    print(f"model {args.model}  device {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}  "
          f"LoRA r={args.rank} all-linear, bf16, AdamW")
    print(f"{'batch':>5} {'ckpt':>5} {'s/step':>8} {'tokens/s':>10} {'padded/s':>10} {'peak GiB':>9}")
    for spec in args.configs.split(","):
        batch, ckpt = spec.split(":")
        r = run(args, int(batch), ckpt == "1")
        print(f"{r['batch']:>5} {str(r['checkpointing']):>5} {r['s_per_step']:>8.3f} {r['tokens_per_s']:>10.0f} "
              f"{r['padded_tokens_per_s']:>10.0f} {r['peak_gib']:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
