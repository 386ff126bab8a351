"""Tiny randomly initialised causal LMs saved to a folder, for tests and benchmarks of the
engines where no real weights can be downloaded: a word-level tokenizer trained on the given
texts with the `tokenizers` library, and a 2-layer GPT-2 or Llama. Their answers are noise;
what they exercise is real: loading from disk, chat templates, padding, batched generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIALS = ["[UNK]", "[PAD]", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]


def build_tiny_model(folder: Path, texts: Sequence[str], arch: str = "gpt2", chat_template: bool = True,
                     vocab_size: int = 2000, seed: int = 0) -> Path:
    import torch  # noqa: PLC0415
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: PLC0415
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: PLC0415

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIALS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>", eos_token="</s>")
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    ids = {t: fast.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "[PAD]")}
    torch.manual_seed(seed)
    common = {"vocab_size": len(fast), "bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"], "pad_token_id": ids["[PAD]"]}
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=512, **common))
    elif arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, hidden_size=32,
                                             intermediate_size=64, max_position_embeddings=512, **common))
    else:
        raise ValueError(f"arch must be gpt2 or llama, not {arch!r}")
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
