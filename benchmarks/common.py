"""Models for the benchmarks: a local folder, or a real architecture with random weights."""

from __future__ import annotations

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
