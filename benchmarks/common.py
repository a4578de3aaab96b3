"""Models for the benchmarks: a local folder, or a real architecture with random weights."""

from __future__ import annotations

import argparse
import os

import torch

LLAMA3_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0)


def load_model(model: str, device: str, dtype: str):
    """``llama3-8b`` builds Llama-3-8B's architecture with random weights (the real cost, no download)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch_dtype = getattr(torch, dtype)
    if model == "llama3-8b":
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch_dtype)
        try:
            with torch.device(device):
                built = LlamaForCausalLM(LlamaConfig(**LLAMA3_8B))
        finally:
            torch.set_default_dtype(previous)
        return built.eval()
    return AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype).to(device).eval()


def non_embedding_params(model) -> int:
    emb = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings()
    head_n = head.weight.numel() if head is not None and head.weight is not model.get_input_embeddings().weight else 0
    return sum(p.numel() for p in model.parameters()) - emb - head_n


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def model_parser(description: str) -> argparse.ArgumentParser:
    """The flags every model benchmark shares: model, tokenizer, device, dtype, data root."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--tokenizer", help="tokenizer folder (default: the model's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--data-dir", default=os.environ.get("CULTURE_DATA_DIR"))
    return p


def load_hflm(args, batch_size: int | str, lm_name: str = "hf", max_batch_size: int = 64):
    """The model of ``model_parser``'s flags, wrapped in lm-eval's ``HFLM`` (``hf``) or the project's
    ``hf-prompt`` subclass: (model, lm)."""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    from culture_tasks.hf_prompt import HFPromptLM

    model = load_model(args.model, args.device, args.dtype)
    tok = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
    cls = {"hf": HFLM, "hf-prompt": HFPromptLM}[lm_name]
    return model, cls(pretrained=model, tokenizer=tok, batch_size=batch_size, max_batch_size=max_batch_size)


def device_line(args) -> str:
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    return f"device {args.device} ({name}), model {args.model}, dtype {args.dtype}"


def leaf_tasks(tree):
    """The task objects of an lm-eval task dict, groups walked through."""
    for value in tree.values():
        if isinstance(value, dict):
            yield from leaf_tasks(value)
        elif hasattr(value, "test_docs"):
            yield value
        elif hasattr(value, "get_all_tasks"):
            yield from value.get_all_tasks()


# dense bf16/fp16 peak TFLOP/s by device name (vendor data sheets, SXM parts); any other device
# names its own with --peak-tflops
DENSE_HALF_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}
# parts sold under those names with a lower peak (H100 PCIe 756, H100/H200 NVL 835): no default
OTHER_PARTS = {"H200": ("NVL",), "H100": ("PCIE", "NVL")}


def half_precision_peak(device: str, dtype: str) -> float | None:
    """The dense peak of a known CUDA device in bfloat16/float16, else None (no % of peak is printed)."""
    if not device.startswith("cuda") or dtype not in ("bfloat16", "float16"):
        return None
    name = torch.cuda.get_device_name(device).upper()
    return next((peak for key, peak in DENSE_HALF_PEAK_TFLOPS.items()
                 if key in name and not any(part in name for part in OTHER_PARTS.get(key, ()))), None)

