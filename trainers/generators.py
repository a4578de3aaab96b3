"""Text generators for augmentation: a local transformers causal LM, or an OpenAI-compatible endpoint.

Both answer ``complete(prompts, n)`` with ``n`` sampled replies per prompt; the augmentation
pipeline knows nothing else about them, so tests can pass a deterministic stand-in.
"""

from __future__ import annotations

import os
from typing import Protocol

from tqdm.auto import tqdm


class Generator(Protocol):
    name: str

    def complete(self, prompts: list[str], n: int) -> list[list[str]]: ...


class LocalGenerator:
    """Batched sampling from a local causal LM, through its chat template where it has one."""

    def __init__(self, model_dir: str, *, device: str = "cpu", dtype: str = "float32", batch_size: int = 32,
                 max_new_tokens: int = 64, temperature: float = 1.0, top_p: float = 0.95):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = str(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)  # auto: the checkpoint's own dtype
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype).to(device).eval()
        self.device, self.batch_size = device, batch_size
        self.kwargs = dict(max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature, top_p=top_p,
                           pad_token_id=self.tokenizer.pad_token_id)

    def _render(self, prompt: str) -> str:
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
        return prompt + "\n"

    def complete(self, prompts: list[str], n: int) -> list[list[str]]:
        import torch

        out: list[list[str]] = []
        step = max(1, self.batch_size // n)  # prompts per call, so that a call holds ~batch_size sequences
        for start in tqdm(range(0, len(prompts), step), desc="generate", unit="batch", leave=False):
            texts = [self._render(p) for p in prompts[start:start + step]]
            # chat templates already start with BOS where the model wants one
            enc = self.tokenizer(texts, return_tensors="pt", padding=True,
                                 add_special_tokens=not self.tokenizer.chat_template).to(self.device)
            with torch.no_grad():
                generated = self.model.generate(**enc, num_return_sequences=n, **self.kwargs)
            replies = self.tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out += [replies[i * n:(i + 1) * n] for i in range(len(texts))]
        return out


class EndpointGenerator:
    """An OpenAI-compatible ``/chat/completions`` endpoint (vLLM, llama.cpp server, hosted APIs)."""

    def __init__(self, url: str, model: str, *, max_new_tokens: int = 64, temperature: float = 1.0,
                 top_p: float = 0.95, timeout: float = 120.0, api_key_env: str = "OPENAI_API_KEY"):
        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/chat/completions") else "/chat/completions")
        self.name = f"{model}@{url}"
        self.model, self.timeout = model, timeout
        self.params = dict(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        key = os.environ.get(api_key_env)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def complete(self, prompts: list[str], n: int) -> list[list[str]]:
        import requests

        out = []
        for prompt in tqdm(prompts, desc="endpoint", unit="request", leave=False):
            body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "n": n, **self.params}
            reply = requests.post(self.url, json=body, headers=self.headers, timeout=self.timeout)
            if reply.status_code != 200:
                raise RuntimeError(f"endpoint {self.url} answered {reply.status_code}: {reply.text[:300]}")
            out.append([c.get("message", {}).get("content") or "" for c in reply.json().get("choices", [])])
        return out
