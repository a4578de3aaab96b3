"""A tiny Llama written as a GGUF file (gguf's own writer): the converter's real input, no download."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tiny_gguf(path: Path, *, seed: int = 0, hidden: int = 16, heads: int = 2, kv_heads: int = 1,
                    ffn: int = 32, split_max_tensors: int = 0, leave_out: tuple[str, ...] = (),
                    extra: dict | None = None, rope_scaling: tuple[str, float] | None = None) -> Path:
    """One decoder layer, float32 tensors, a byte-fallback llama tokenizer; ``seed`` picks the weights.

    ``split_max_tensors``: written as llama.cpp's gguf-split shards (``<stem>-0000k-of-0000n.gguf``,
    each a GGUF file of its own); ``leave_out``: tensors not written (a GGUF that lacks weights);
    ``extra``: more tensors by GGUF name (ones llama.cpp reads and transformers' model has no place for);
    ``rope_scaling``: ``(type, factor)`` written as ``llama.rope.scaling.*``."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + ["▁", "a", "b", "▁a"]
    types = [2, 3, 3] + [6] * 256 + [1] * 4  # unknown, control, byte, normal
    head_dim = hidden // heads
    writer = gguf.GGUFWriter(str(path), "llama", split_max_tensors=split_max_tensors)
    writer.add_context_length(64)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    if rope_scaling is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType(rope_scaling[0]))
        writer.add_rope_scaling_factor(rope_scaling[1])
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)

    def rand(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    ones = np.ones(hidden, np.float32)
    tensors = {
        "token_embd.weight": rand(len(tokens), hidden), "output_norm.weight": ones, "output.weight": rand(len(tokens), hidden),
        "blk.0.attn_norm.weight": ones, "blk.0.attn_q.weight": rand(hidden, hidden),
        "blk.0.attn_k.weight": rand(kv_heads * head_dim, hidden), "blk.0.attn_v.weight": rand(kv_heads * head_dim, hidden),
        "blk.0.attn_output.weight": rand(hidden, hidden), "blk.0.ffn_norm.weight": ones,
        "blk.0.ffn_gate.weight": rand(ffn, hidden), "blk.0.ffn_up.weight": rand(ffn, hidden),
        "blk.0.ffn_down.weight": rand(hidden, ffn),
    }
    tensors.update(extra or {})
    for name, value in tensors.items():
        if name not in leave_out:
            writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def write_tiny_falcon_gguf(path: Path, *, seed: int = 0, hidden: int = 16, heads: int = 2, kv_heads: int = 1
                           ) -> dict[str, np.ndarray]:
    """One Falcon layer with its own output matrix (``output.weight`` not the input embedding), a byte-level BPE
    tokenizer; returns the tensors written, by GGUF name."""
    import gguf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    rng = np.random.default_rng(seed)
    head_dim, vocab = hidden // heads, 260
    writer = gguf.GGUFWriter(str(path), "falcon")
    writer.add_context_length(64)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(4 * hidden)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_eps(1e-5)
    byte_chars = bytes_to_unicode()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([byte_chars[i] for i in range(256)] + ["<|endoftext|>", "ab", "cd", "ef"])
    writer.add_token_types([1] * 256 + [3, 1, 1, 1])
    writer.add_token_merges(["a b", "c d", "e f"])
    writer.add_bos_token_id(256)
    writer.add_eos_token_id(256)

    def normal(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    ones, zeros = np.ones(hidden, np.float32), np.zeros(hidden, np.float32)
    tensors = {"token_embd.weight": normal(vocab, hidden), "output.weight": normal(vocab, hidden),
               "output_norm.weight": ones, "output_norm.bias": zeros,
               "blk.0.attn_norm.weight": ones, "blk.0.attn_norm.bias": zeros,
               "blk.0.attn_qkv.weight": normal((heads + 2 * kv_heads) * head_dim, hidden),
               "blk.0.attn_output.weight": normal(hidden, hidden),
               "blk.0.ffn_up.weight": normal(4 * hidden, hidden), "blk.0.ffn_down.weight": normal(hidden, 4 * hidden)}
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tensors
