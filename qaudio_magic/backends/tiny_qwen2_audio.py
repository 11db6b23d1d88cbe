"""A tiny, randomly initialised Qwen2-Audio checkpoint built in code, with no download.

For tests, CI and offline demos of ``-m local:DIR``: it has the real architecture,
processor (Whisper features, 128 mel bins, 30 s window) and chat template, so the whole
``local`` path runs — but about 60k random parameters, so its words are noise. The
tokenizer is byte-level BPE with no merges (256 byte symbols plus Qwen's special tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["save_tiny_qwen2_audio"]

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
)


def save_tiny_qwen2_audio(directory: str | Path, *, seed: int = 0) -> Path:
    """Build the tiny model and processor and save both to ``directory`` (returned)."""
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        Qwen2Tokenizer,
        WhisperFeatureExtractor,
    )

    vocab = {symbol: i for i, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,  # type: ignore[arg-type]  # byte-level: every input has a token
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    ids = {token: _token_id(tokenizer, token) for token in SPECIAL_TOKENS}
    features = WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16_000, hop_length=160, n_fft=400, chunk_length=30
    )
    processor = Qwen2AudioProcessor(feature_extractor=features, tokenizer=tokenizer)
    config = Qwen2AudioConfig(
        audio_config={
            "model_type": "qwen2_audio_encoder",
            "d_model": 16,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 32,
            "encoder_layers": 1,
            "num_mel_bins": 128,
            "max_source_positions": 1500,  # the real 30 s window, so the real processor fits
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "bos_token_id": ids["<|im_start|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        audio_token_index=ids["<|AUDIO|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _token_id(tokenizer: Any, token: str) -> int:
    """The id of one token (``convert_tokens_to_ids`` is typed for lists too)."""
    found = tokenizer.convert_tokens_to_ids(token)
    assert isinstance(found, int), token
    return found
