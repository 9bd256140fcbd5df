"""Build tiny random checkpoints (model + tokenizer) for tests: seconds, no downloads. Llama, and the
other decoders the pipeline supports (Gemma-2, Qwen2, Mistral) with the same tokenizer."""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "what is the capital of france paris berlin madrid rome tokyo answer question sorry cannot help "
    "i am an ai language model this request assist explain how why tip use water sun blue green red "
    "one two three four five six seven eight nine ten plus equals week days colour sky grass "
    "the a is of to and in it you your for with on that this be are was"
).split()


# model_type of each architecture build_tiny can make; tests parametrize over them.
ARCHITECTURES = ("llama", "gemma2", "qwen2", "mistral")
# Shorter than the tests' rows, so that windowed layers differ from full causal attention.
TINY_SLIDING_WINDOW = 32


def build_tiny_tokenizer(out_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] + [
        "<prompt>: <response_a>: <response_b>: 0123456789"
    ]
    corpus += ["Preferred: A Preferred: B Preferred: tie"] * 300  # the sft head's label words, one token each
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def tiny_config(architecture: str, tokenizer, hidden_size: int = 64, layers: int = 4):
    """A tiny config keeping what sets each architecture apart: Gemma-2's head width unlike hidden /
    heads, its query scaling, soft-capping and alternating sliding-window layers; Qwen2's biased
    q/k/v and its windowed upper layers; Mistral's window on every layer."""
    from transformers import AutoConfig

    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": hidden_size * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": True,
    }
    extra = {
        "llama": {},
        "gemma2": {
            "head_dim": hidden_size // 2,
            "query_pre_attn_scalar": hidden_size // 2,
            "attn_logit_softcapping": 50.0,
            "final_logit_softcapping": 30.0,
            "sliding_window": TINY_SLIDING_WINDOW,
        },
        "qwen2": {"use_sliding_window": True, "sliding_window": TINY_SLIDING_WINDOW, "max_window_layers": layers // 2},
        "mistral": {"sliding_window": TINY_SLIDING_WINDOW},
    }[architecture]
    return AutoConfig.for_model(architecture, **common, **extra)


def build_tiny(
    out_dir: Path, architecture: str = "llama", hidden_size: int = 64, layers: int = 4, seed: int = 0
) -> Path:
    """A tiny random causal language model of `architecture` (one of ARCHITECTURES) with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(out_dir)
    torch.manual_seed(seed)
    config = tiny_config(architecture, tokenizer, hidden_size, layers)
    AutoModelForCausalLM.from_config(config).save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def build_tiny_llama(out_dir: Path, hidden_size: int = 64, layers: int = 4, seed: int = 0) -> Path:
    return build_tiny(out_dir, "llama", hidden_size, layers, seed)
