"""The fold soup: k folds' LoRA adapters as one adapter whose weight change is the mean of theirs.

For an adapted matrix fold i adds s_i B_i A_i (s_i: peft's scaling, lora_alpha / r). The mean of
the k changes is exactly one LoRA of rank sum(r_i): A = [A_1; ...; A_k] stacked by rows and
B = [c_1 B_1, ..., c_k B_k] side by side, with c_i = s_i / (k s) for the soup's scaling s (the
first fold's, so that equal folds give lora_alpha = k * alpha and B_i / k). Averaging A and B
element-wise instead would give (1/k^2) sum_ij s B_i A_j: cross terms of unrelated folds. The
layers saved beside the LoRA matrices (the classification layer, `modules_to_save`) are
averaged. The soup predicts at the cost of one fold: the stacked matrices add k * r to a rank
that is tiny beside the layer's width, and a merged adapter costs nothing at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from arenapref.errors import CheckpointError
from arenapref.io import atomic_dir, dir_sha256

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
SOUP_RECORD = "soup.json"
LORA_A, LORA_B = ".lora_A.", ".lora_B."


def _read_adapter(path: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    config_file, weights_file = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
    if not config_file.is_file() or not weights_file.is_file():
        raise CheckpointError(f"{path}: not a trained adapter ({ADAPTER_CONFIG} or {ADAPTER_WEIGHTS} missing)")
    try:
        return json.loads(config_file.read_text(encoding="utf-8")), load_file(str(weights_file))
    except Exception as err:  # a truncated or garbled file shows up as many exception types
        raise CheckpointError(f"{path}: the adapter cannot be read ({type(err).__name__}: {str(err)[:200]})") from err


def lora_scaling(config: dict) -> float:
    """peft's factor on B A: lora_alpha / r (lora_alpha / sqrt(r) with rsLoRA)."""
    rank = config["r"]
    return config["lora_alpha"] / (math.sqrt(rank) if config.get("use_rslora") else rank)


def _check_soupable(path: Path, config: dict) -> None:
    if config.get("peft_type", "LORA") != "LORA":
        raise CheckpointError(f"{path}: a {config['peft_type']} adapter; only LoRA adapters make a soup")
    if config.get("use_dora"):
        raise CheckpointError(f"{path}: a DoRA adapter (its magnitude vector does not average into one LoRA)")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        raise CheckpointError(f"{path}: the adapter trains biases; a soup takes LoRA matrices and saved layers only")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise CheckpointError(f"{path}: per-module ranks or alphas (rank_pattern, alpha_pattern) are not supported")


def _layers(config: dict):
    layers = config.get("layers_to_transform")
    return sorted([layers] if isinstance(layers, int) else layers) if layers is not None else None


def _check_same(paths: Sequence[Path], configs: Sequence[dict], weights: Sequence[dict]) -> None:
    """One line naming the first fold that differs from the first one, and in what."""
    first_config, first_weights = configs[0], weights[0]
    same = {
        "base": lambda c: Path(str(c.get("base_model_name_or_path") or "")).name,
        "task": lambda c: c.get("task_type"),
        "target modules": lambda c: sorted(c["target_modules"]) if isinstance(c["target_modules"], list) else None,
        "layers": _layers,
        "saved layers": lambda c: sorted(c.get("modules_to_save") or []),
    }
    for path, config, tensors in zip(paths[1:], configs[1:], weights[1:], strict=True):
        for what, value in same.items():
            if value(config) != value(first_config):
                raise CheckpointError(
                    f"{path}: {what} {value(config)} differ from {paths[0]}'s {value(first_config)}; "
                    "only adapters of one base, layout and head make a soup"
                )
        if set(tensors) != set(first_weights):
            differing = sorted(set(tensors) ^ set(first_weights))
            raise CheckpointError(
                f"{path}: adapts other modules than {paths[0]} (e.g. {differing[0]}); "
                "the folds' adapters differ in target modules or layers"
            )
        for name, tensor in tensors.items():
            reference = first_weights[name]
            # A LoRA matrix may differ in rank only; everything else (the head above all) must match.
            compared = (
                (tensor.shape[1:], reference.shape[1:])
                if LORA_A in name
                else (tensor.shape[:1], reference.shape[:1])
                if LORA_B in name
                else (tensor.shape, reference.shape)
            )
            if compared[0] != compared[1]:
                kind = "LoRA matrix" if LORA_A in name or LORA_B in name else "head shape"
                raise CheckpointError(
                    f"{path}: {name} has shape {tuple(tensor.shape)}, {paths[0]}'s {tuple(reference.shape)}; "
                    f"the folds' adapters differ in {kind} (another base model or head?)"
                )


def soup_tensors(configs: Sequence[dict], weights: Sequence[dict]) -> tuple[dict, float]:
    """The soup's tensors and its scaling (the first fold's), from adapters already checked alike."""
    import torch

    k = len(weights)
    scaling = lora_scaling(configs[0])
    factors = [lora_scaling(config) / (k * scaling) for config in configs]
    soup = {}
    for name, reference in weights[0].items():
        if LORA_A in name:
            soup[name] = torch.cat([tensors[name] for tensors in weights], dim=0).contiguous()
        elif LORA_B in name:
            soup[name] = torch.cat(
                [
                    (tensors[name].double() * factor).to(reference.dtype)
                    for tensors, factor in zip(weights, factors, strict=True)
                ],
                dim=1,
            ).contiguous()
        else:
            # Averaged in float64 so the soup of k equal heads is that head, bit for bit.
            soup[name] = (sum(tensors[name].double() for tensors in weights) / k).to(reference.dtype).contiguous()
    return soup, scaling


def make_soup(adapter_dirs: Sequence[str | Path], out_dir: str | Path, names: Sequence[str] | None = None) -> dict:
    """Write the soup of `adapter_dirs` to `out_dir` (a peft adapter folder, written atomically)
    with soup.json naming the adapters it was made from (name, sha256). Returns that record."""
    from safetensors.torch import save_file

    paths = [Path(p) for p in adapter_dirs]
    if not paths:
        raise CheckpointError("no fold adapters to make a soup of")
    names = list(names) if names is not None else [p.parent.name if p.name == "adapter" else p.name for p in paths]
    read = [_read_adapter(path) for path in paths]
    configs, weights = [config for config, _ in read], [tensors for _, tensors in read]
    for path, config in zip(paths, configs, strict=True):
        _check_soupable(path, config)
    _check_same(paths, configs, weights)
    tensors, scaling = soup_tensors(configs, weights)
    rank = sum(config["r"] for config in configs)
    config = dict(configs[0], r=rank, lora_alpha=scaling * rank, use_rslora=False, rank_pattern={}, alpha_pattern={})
    record = {
        "method": "mean of the folds' weight changes: LoRA matrices stacked, saved layers averaged",
        "rank": rank,
        "scaling": scaling,
        "adapters": [
            {"name": name, "path": str(path), "sha256": dir_sha256(path), "r": c["r"], "lora_alpha": c["lora_alpha"]}
            for name, path, c in zip(names, paths, configs, strict=True)
        ],
    }
    with atomic_dir(out_dir) as staging:
        (staging / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        save_file(tensors, str(staging / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        (staging / SOUP_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
