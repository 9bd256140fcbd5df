"""Predicting with several folds' adapters at once: one base model, the layers below the adapters
computed once per batch.

Every fold's LoRA adapter lives in the upper half of the decoder (`model.lora.layers:
upper_half`), so the lower half turns a batch into the same hidden states whichever fold
predicts. Those are computed once; each fold then runs only the upper layers and its own
classification layer. k folds cost (1 + k) / 2 forward passes instead of k, with the same
numbers as predicting one fold at a time (the same modules in the same order).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from arenapref.errors import CheckpointError
from arenapref.evaluate.predict import batched_probabilities
from arenapref.model.heads import decoder_mask
from arenapref.model.modeling import bitsandbytes_kept_out, decoder_layers


def load_fold_adapters(base_model, adapters: Mapping[str, Path]):
    """The base model with every adapter loaded under its fold's name (peft multi-adapter)."""
    items = list(adapters.items())
    for _, path in items:
        if not (Path(path) / "adapter_model.safetensors").exists():
            raise CheckpointError(f"no trained adapter at {path} (adapter_model.safetensors missing)")
    first_name, first_path = items[0]
    with bitsandbytes_kept_out():
        from peft import PeftModel

        model = PeftModel.from_pretrained(base_model, first_path, adapter_name=first_name, is_trainable=False)
        for name, path in items[1:]:
            model.load_adapter(path, adapter_name=name, is_trainable=False)
    model.eval()
    return model


def first_adapted_layer(adapters: Mapping[str, Path], num_layers: int) -> int:
    """The lowest layer any of the adapters changes: everything below it is shared."""
    lowest = num_layers
    for path in adapters.values():
        config = json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8"))
        layers = config.get("layers_to_transform")
        if layers is None:
            return 0
        lowest = min(lowest, min([layers] if isinstance(layers, int) else layers))
    return lowest


@contextmanager
def only_layers(model, start: int, stop: int | None = None, final_norm: bool = True):
    """Run the decoder on layers[start:stop] alone (and without its final norm when asked)."""
    base = model.get_base_model()
    body = getattr(base, base.base_model_prefix)
    layers, norm = decoder_layers(model), body.norm
    body.layers = torch.nn.ModuleList(list(layers)[start:stop])
    # The decoder picks each layer's mask (full or sliding window) by its position in layer_types:
    # those must move with the layers (Qwen2's windowed upper layers, Gemma-2's at an odd split).
    layer_types = getattr(body.config, "layer_types", None)
    if layer_types is not None:
        body.config.layer_types = list(layer_types)[start:stop]
    if not final_norm:
        body.norm = torch.nn.Identity()
    try:
        yield body
    finally:
        body.layers, body.norm = layers, norm
        if layer_types is not None:
            body.config.layer_types = layer_types


def fold_logits(
    model, head, folds: Sequence[str], input_ids: torch.Tensor, attention_mask: torch.Tensor, split: int, pad_id: int
) -> dict[str, torch.Tensor]:
    """Three class logits per row for every fold, sharing the layers below `split`."""
    mask = decoder_mask(attention_mask)
    with only_layers(model, 0, split, final_norm=False) as body:
        shared = body(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
    last = head.scored_positions(input_ids, attention_mask, pad_id)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    logits = {}
    for fold in folds:
        model.set_adapter(fold)
        with only_layers(model, split) as body:
            hidden = body(inputs_embeds=shared, attention_mask=mask, use_cache=False).last_hidden_state
        logits[fold] = head.logits_at(model, hidden[rows, last])
    return logits


def predict_folds(
    model,
    folds: Sequence[str],
    input_ids: Sequence[Sequence[int]],
    device: torch.device,
    dtype: torch.dtype,
    pad_id: int,
    tokens_per_batch: int,
    max_batch_rows: int,
    head,
    split: int,
    desc: str = "predict",
    on_batch=None,
) -> dict[str, np.ndarray]:
    """Class probabilities per fold, in input order, with the length-sorted token-budget batches of
    predict.predict_probabilities."""
    model.eval()
    return batched_probabilities(
        lambda ids, mask: fold_logits(model, head, folds, ids, mask, split, pad_id),
        folds,
        input_ids,
        device,
        dtype,
        pad_id,
        tokens_per_batch,
        max_batch_rows,
        desc,
        on_batch,
    )
