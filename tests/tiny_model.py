"""A tiny Llama with a byte-level BPE tokenizer trained on the spot: real code paths, no hub."""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

CORPUS = [
    "Does the following text contain offensive language? Answer: A B C D E",
    "Options: not offensive, offensive, hate speech, spam, not spam, abusive.",
    "How would a person from the United States answer? Strongly agree, agree, disagree.",
    "Please think of an ideal job. Of utmost importance, very important, of little importance.",
    "1 2 3 4 5 6 7 8 9 10 Never Always Yes No Hard to say",
] * 20 + [" ".join(f"Answer: {letter}" for letter in "ABCDEFGHIJ")] * 50


def build_tiny_model(path: Path, *, seed: int = 0, hidden_size: int = 32, layers: int = 2,
                     initializer_range: float = 0.02) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = ["<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", chat_template=CHAT_TEMPLATE
    )
    fast.save_pretrained(path)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=initializer_range,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def save_random_lora(base: Path, out: Path, *, seed: int) -> Path:
    """A LoRA adapter of ``base`` on q/v with random A and B (not peft's B = 0 start), so that it
    changes the answers; saved as stock peft safetensors."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False, base_model_name_or_path=str(base))
    get_peft_model(model, config).save_pretrained(str(out), safe_serialization=True)
    return out


def damaged_copy(model: Path, out: Path, weight: str = "model.layers.1.mlp.down_proj.weight") -> Path:
    """A copy of the tiny model folder with one NaN in ``weight``: every log-likelihood it gives is NaN,
    in any dtype (a damaged model file)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(model, out)
    weights = load_file(str(out / "model.safetensors"))
    weights[weight][0, 0] = float("nan")
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def bfloat16_copy(model: Path, out: Path) -> Path:
    """A copy of the tiny model folder whose config names bfloat16, as a model published in it:
    ``--dtype auto`` loads it in half precision."""
    import json
    import shutil

    shutil.copytree(model, out)
    config = json.loads((out / "config.json").read_text())
    config.pop("torch_dtype", None)
    (out / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16"}))
    return out
