"""Text generators for augmentation: a local transformers causal LM, or an OpenAI-compatible endpoint.

Both answer ``complete(prompts, n)`` with ``n`` sampled replies per prompt; the augmentation
pipeline knows nothing else about them, so tests can pass a deterministic stand-in. Each reply is
drawn under its own seed, derived from the run's seed, the prompt and the reply's number, so a
reply does not depend on which other prompts shared its batch.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol

from tqdm.auto import tqdm


class EndpointError(ValueError):
    """An endpoint that cannot be reached or answers otherwise than asked; one line naming it."""


class Generator(Protocol):
    name: str

    def complete(self, prompts: list[str], n: int) -> list[list[str]]: ...


# how replies are drawn, stored with an augmentation run: a run begun under another scheme is not resumed
SAMPLING = "reply_seed(seed, prompt, index), one Gumbel draw per token"


def reply_seed(seed: int, prompt: str, index: int) -> int:
    """The seed of reply ``index`` to ``prompt`` (31 bits, which every server accepts)."""
    digest = hashlib.sha256(f"{seed}\0{index}\0{prompt}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def _seeded_sampling(seeds: list[int]):
    """A logits processor that turns greedy decoding into sampling row by row: the argmax of the
    (temperature-scaled, top-p filtered) logits plus Gumbel noise is a draw from their softmax, and
    each row's noise comes from its own generator, so a row's draw does not depend on the batch
    (``generate``'s own sampling draws for the whole batch from one random stream)."""
    import torch
    from transformers import LogitsProcessor

    class SeededGumbelNoise(LogitsProcessor):
        def __init__(self):
            self.generators = [torch.Generator().manual_seed(s) for s in seeds]

        def __call__(self, input_ids, scores):
            u = torch.stack([torch.rand(scores.shape[-1], generator=g, dtype=torch.float64) for g in self.generators])
            noise = -torch.log(-torch.log(u))  # Gumbel(0, 1); drawn on the CPU, the same on every device
            return scores + noise.to(device=scores.device, dtype=scores.dtype)

    return SeededGumbelNoise()


class LocalGenerator:
    """Batched sampling from a local causal LM, through its chat template where it has one."""

    def __init__(self, model_dir: str, *, device: str = "cpu", dtype: str = "float32", batch_size: int = 32,
                 max_new_tokens: int = 64, temperature: float = 1.0, top_p: float = 0.95, seed: int = 0):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = str(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)  # auto: the checkpoint's own dtype
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype).to(device).eval()
        self.device, self.batch_size, self.seed = device, batch_size, seed
        self.temperature, self.top_p = temperature, top_p
        # sampling is done by the seeded processors; none of the checkpoint's own decoding settings apply (a
        # repetition penalty, an n-gram ban, a minimum length or beams in its generation_config.json would shape
        # every reply): a fresh GenerationConfig, greedy over the processors' scores, with the model's stop tokens
        # (the model's own is replaced: transformers fills a passed config's default values from it)
        from transformers import GenerationConfig

        own = self.model.generation_config
        self.model.generation_config = GenerationConfig(
            eos_token_id=own.eos_token_id if own.eos_token_id is not None else self.tokenizer.eos_token_id,
            bos_token_id=own.bos_token_id, pad_token_id=self.tokenizer.pad_token_id)
        self.kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                           pad_token_id=self.tokenizer.pad_token_id)

    def _processors(self, prompts: list[str], n: int):
        """Temperature, top-p and each row's seeded noise; rows are prompt by prompt, n each."""
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        seeds = [reply_seed(self.seed, p, j) for p in prompts for j in range(n)]
        return LogitsProcessorList([TemperatureLogitsWarper(self.temperature), TopPLogitsWarper(self.top_p),
                                    _seeded_sampling(seeds)])

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
            batch = prompts[start:start + step]
            texts = [self._render(p) for p in batch]
            # chat templates already start with BOS where the model wants one
            enc = self.tokenizer(texts, return_tensors="pt", padding=True,
                                 add_special_tokens=not self.tokenizer.chat_template).to(self.device)
            # each prompt n times in a row (greedy decoding takes no num_return_sequences): one row per reply
            enc = {k: v.repeat_interleave(n, dim=0) for k, v in enc.items()}
            with torch.no_grad():
                generated = self.model.generate(**enc, logits_processor=self._processors(batch, n), **self.kwargs)
            replies = self.tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out += [replies[i * n:(i + 1) * n] for i in range(len(texts))]
        return out


class EndpointGenerator:
    """An OpenAI-compatible ``/chat/completions`` endpoint (vLLM, llama.cpp server, hosted APIs)."""

    def __init__(self, url: str, model: str, *, max_new_tokens: int = 64, temperature: float = 1.0,
                 top_p: float = 0.95, timeout: float = 120.0, api_key_env: str = "OPENAI_API_KEY", seed: int = 0):
        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/chat/completions") else "/chat/completions")
        self.name = f"{model}@{url}"
        self.model, self.timeout, self.seed = model, timeout, seed
        self.params = dict(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        key = os.environ.get(api_key_env)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def complete(self, prompts: list[str], n: int) -> list[list[str]]:
        import requests

        out = []
        for prompt in tqdm(prompts, desc="endpoint", unit="request", leave=False):
            body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "n": n,
                    "seed": reply_seed(self.seed, prompt, 0), **self.params}  # honoured where the server can
            try:
                reply = requests.post(self.url, json=body, headers=self.headers, timeout=self.timeout)
            except requests.RequestException as err:
                raise EndpointError(f"endpoint {self.url} could not be reached ({type(err).__name__}); check "
                                    "--endpoint and that the server runs") from None
            if reply.status_code != 200:
                raise EndpointError(f"endpoint {self.url} answered {reply.status_code}: "
                                    f"{' '.join(reply.text[:300].split())}")
            replies = [c.get("message", {}).get("content") or "" for c in reply.json().get("choices", [])]
            if len(replies) != n:  # a server that ignores n= would leave a question with fewer variants
                raise EndpointError(f"endpoint {self.url} returned {len(replies)} replies for n={n}; serve the "
                                   "n parameter (vLLM, llama.cpp server do) or use a local --generator")
            out.append(replies)
        return out
