"""LoRA training throughput and peak memory, through the trainer's own Trainer set-up.

    python -m benchmarks.bench_lora --model llama3-8b --tokenizer <dir> --device cuda --steps 20

Real examples (WVS seeds + an augmented set, labelled with one country's answers) are tokenised
as the trainer does; ``llama3-8b`` is Llama-3-8B's architecture with random weights (the real
cost). Tokens/s counts non-padding tokens over the steps after the warm-up. ``--profile-steps``
adds the operator counts of the steps after the timed ones (torch.profiler): every aten operator
called (nested ones included), the dtype conversions among them (``aten::_to_copy``), the dropout
calls (``aten::dropout`` and, on a GPU, ``native_dropout_backward``) and, on a GPU, the kernels launched.

    python -m benchmarks.bench_lora --model <small model dir> --tokenizer <same dir> --device cpu \
        --dtype bfloat16 --configs 4:0 --steps 6 --warmup 2 --profile-steps 2         # CPU op counts

``--full-logits`` runs the LM head at every position, as the trainer did before it kept the answer
positions only (``trainers.lora.answer_positions``): the before/after figure of that change.
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


class _Profile(TrainerCallback):
    """torch.profiler over the steps after ``start`` steps, ``steps`` of them."""

    def __init__(self, start: int, steps: int):
        self.start, self.steps, self.prof, self.done = start, steps, None, 0

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.start and self.steps:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
            self.prof = profile(activities=acts)
            self.prof.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if self.prof is not None and self.done < self.steps:
            self.done += 1
            if self.done == self.steps:
                torch.cuda.synchronize() if torch.cuda.is_available() else None
                self.prof.__exit__(None, None, None)

    def counts(self) -> dict:
        """Operators per step."""
        if self.prof is None or self.done < self.steps:
            return {}
        events = self.prof.events()
        aten = [e for e in events if e.name.startswith("aten::") and e.device_type.name == "CPU"]
        per = lambda n: n / self.steps  # noqa: E731
        out = {"aten_ops": per(len(aten)),
               "to_copy": per(sum(e.name == "aten::_to_copy" for e in aten)),
               "dropout": per(sum(e.name in ("aten::dropout", "aten::native_dropout_backward") for e in aten))}
        if torch.cuda.is_available():
            out["kernels"] = per(sum(e.device_type.name == "CUDA" for e in events))
        return out


def _process_peak_gib() -> float:
    """On CPU: the process's largest resident set so far (the model included; one config per run to read it
    per config)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class _CountingCollator:
    def __init__(self, tokenizer):
        self.collate = answer_only_collator(tokenizer)
        self.tokens, self.padded = [], []

    def __call__(self, batch):
        out = self.collate(batch)
        self.tokens.append(int(out["attention_mask"].sum()))
        self.padded.append(out["input_ids"].numel())
        return out


def run(args, batch_size: int, checkpointing: bool, compile_step: bool = False) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    rows = build_examples(args.culture, questions_file=args.questions, data_dir=args.data_dir).rows
    torch.cuda.reset_peak_memory_stats() if torch.cuda.is_available() else None
    model = load_model(args.model, args.device, args.dtype)
    with tempfile.TemporaryDirectory() as out:
        cfg = LoraTrainConfig(model=args.model, data=[], output=out, batch_size=batch_size,
                              max_steps=args.steps + args.profile_steps, gradient_checkpointing=checkpointing,
                              rank=args.rank, alpha=2 * args.rank, dropout=args.dropout, bf16=args.dtype == "bfloat16",
                              logging_steps=10_000, save_steps=10_000, chat_template=True,
                              extra={"torch_compile": True} if compile_step else {})
        encoded, _, _ = encode_for(cfg, tokenizer, rows)
        collator = _CountingCollator(tokenizer)
        trainer = make_trainer(cfg, model, tokenizer, encoded, collator)
        trainer.answer_positions_only &= not args.full_logits
        clock, profile = _Clock(), _Profile(args.steps, args.profile_steps)
        trainer.add_callback(clock)
        trainer.add_callback(profile)
        trainer.train()
    clock.times = clock.times[:args.steps]  # the profiled steps are not timed
    w = args.warmup
    seconds = clock.times[-1] - clock.times[w - 1]
    # the Trainer collates each step's batch before that step; steps w+1..N used batches w..N-1
    tokens = sum(collator.tokens[w:len(clock.times)])
    padded = sum(collator.padded[w:len(clock.times)])
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else _process_peak_gib()
    del trainer, model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return {"batch": batch_size, "checkpointing": checkpointing, "compiled": compile_step, "steps": len(clock.times) - w,
            "s_per_step": seconds / (len(clock.times) - w), "tokens_per_s": tokens / seconds,
            "padded_tokens_per_s": padded / seconds, "peak_gib": peak, **profile.counts()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="llama3-8b")
    p.add_argument("--tokenizer", required=True, help="tokenizer folder (with a chat template)")
    p.add_argument("--culture", default="english")
    p.add_argument("--questions", help="augmented questions (default: seeds only)")
    p.add_argument("--data-dir")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", choices=["bfloat16", "float32"],
                   help="model dtype; bfloat16 also trains under bf16 autocast (default: bfloat16 on cuda, else float32)")
    p.add_argument("--dropout", type=float, default=LoraTrainConfig.__dataclass_fields__["dropout"].default,
                   help="LoRA dropout (default: the trainer's)")
    p.add_argument("--full-logits", action="store_true",
                   help="the LM head at every position, as before the trainer asked it for the answer positions only")
    p.add_argument("--profile-steps", type=int, default=0, help="steps after the timed ones to count operators in")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--configs", default="16:1,16:0,64:1",
                   help="batch:checkpointing[:compile] (e.g. 16:0:1 = batch 16, no checkpointing, the Trainer's "
                        "torch_compile; the compilation falls in the warm-up steps)")
    args = p.parse_args(argv)
    if not 1 <= args.warmup < args.steps:  # the timed steps are those after the warm-up, timed from its last
        p.error(f"--warmup must be at least 1 and below --steps ({args.steps}), got {args.warmup}")
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    print(f"model {args.model}  device {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}  "
          f"LoRA r={args.rank} dropout {args.dropout} all-linear, {args.dtype}, AdamW, "
          f"LM head {'at every position' if args.full_logits else 'at the answer positions'}"
          + ("" if torch.cuda.is_available() else "; peak = the process's largest resident set"))
    ops = ("aten_ops", "to_copy", "dropout") + (("kernels",) if torch.cuda.is_available() else ())
    print(f"{'batch':>5} {'ckpt':>5} {'compile':>7} {'s/step':>8} {'tokens/s':>10} {'padded/s':>10} {'peak GiB':>9}"
          + ("".join(f" {k:>9}" for k in ops) + "  (operators per step)" if args.profile_steps else ""))
    for spec in args.configs.split(","):
        batch, ckpt, *compiled = spec.split(":")
        r = run(args, int(batch), ckpt == "1", compiled == ["1"])
        print(f"{r['batch']:>5} {str(r['checkpointing']):>5} {str(r['compiled']):>7} {r['s_per_step']:>8.3f} {r['tokens_per_s']:>10.0f} "
              f"{r['padded_tokens_per_s']:>10.0f} {r['peak_gib']:>9.1f}"
              + ("".join(f" {r[k]:>9.0f}" for k in ops) if args.profile_steps else ""), flush=True)


if __name__ == "__main__":
    main()
