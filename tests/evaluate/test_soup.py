"""The fold soup: one adapter whose weight change is exactly the mean of the folds'."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from arenapref.config import RunConfig
from arenapref.errors import CheckpointError

FOLDS = ("fold0", "fold1", "fold2")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def fold_adapters(tiny_checkpoint, tmp_path_factory):
    """Three adapters with different random A, B and heads; the third with another lora_alpha, so
    that the soup must fold differing scalings into B."""
    from arenapref.bench.folds import random_adapters

    adapters = random_adapters(tiny_checkpoint, RunConfig.from_config({}), FOLDS, tmp_path_factory.mktemp("folds"))
    config_file = adapters["fold2"] / "adapter_config.json"
    config_file.write_text(json.dumps(dict(json.loads(config_file.read_text()), lora_alpha=16)))
    return adapters


def _input_ids(tokenizer, rows=19, seed=0):
    rng = np.random.default_rng(seed)
    return [list(rng.integers(5, 300, size=int(n))) for n in rng.integers(5, 60, size=rows)]


def _probabilities(model, tokenizer, ids):
    from arenapref.evaluate.predict import predict_probabilities
    from arenapref.model.heads import make_head

    head = make_head("classifier", tokenizer)
    return predict_probabilities(model, ids, CPU, torch.float32, tokenizer.pad_token_id, 256, 8, head=head)


def _base(checkpoint, tokenizer):
    from arenapref.model.modeling import load_base_model

    return load_base_model(checkpoint, RunConfig.from_config({}).model, CPU, torch.float32, tokenizer.pad_token_id)


def _merged_state(checkpoint, tokenizer, adapter):
    from arenapref.model.modeling import load_trained_adapter

    merged = load_trained_adapter(_base(checkpoint, tokenizer), adapter).merge_and_unload()
    return {name: tensor.detach().clone() for name, tensor in merged.state_dict().items()}


def test_soup_predicts_as_the_mean_of_the_folds_merged_weights(
    tiny_checkpoint, tiny_tokenizer, fold_adapters, tmp_path
):
    import shutil

    from safetensors.torch import load_file, save_file

    from arenapref.evaluate.soup import ADAPTER_WEIGHTS, make_soup
    from arenapref.io import dir_sha256
    from arenapref.model.modeling import for_inference, load_trained_adapter

    record = make_soup(list(fold_adapters.values()), tmp_path / "soup" / "adapter")
    soup_dir = tmp_path / "soup" / "adapter"
    assert [a["name"] for a in record["adapters"]] == list(FOLDS)
    assert [a["sha256"] for a in record["adapters"]] == [dir_sha256(p) for p in fold_adapters.values()]
    assert json.loads((soup_dir / "soup.json").read_text()) == record
    config = json.loads((soup_dir / "adapter_config.json").read_text())
    assert config["r"] == 12 and config["lora_alpha"] / config["r"] == pytest.approx(8 / 4)

    states = [_merged_state(tiny_checkpoint, tiny_tokenizer, path) for path in fold_adapters.values()]
    mean = {name: sum(state[name] for state in states) / len(states) for name in states[0]}
    reference = _base(tiny_checkpoint, tiny_tokenizer)
    reference.load_state_dict(mean)
    ids = _input_ids(tiny_tokenizer)
    expected = _probabilities(reference.eval(), tiny_tokenizer, ids)

    apart = load_trained_adapter(_base(tiny_checkpoint, tiny_tokenizer), soup_dir)  # as on a 4-bit base
    np.testing.assert_allclose(_probabilities(apart, tiny_tokenizer, ids), expected, atol=1e-5)
    merged = for_inference(load_trained_adapter(_base(tiny_checkpoint, tiny_tokenizer), soup_dir), torch.float32)
    np.testing.assert_allclose(_probabilities(merged, tiny_tokenizer, ids), expected, atol=1e-5)

    # The test tells the exact soup from near misses: one fold alone, and A and B averaged element-wise.
    fold0 = load_trained_adapter(_base(tiny_checkpoint, tiny_tokenizer), fold_adapters["fold0"])
    assert np.abs(_probabilities(fold0, tiny_tokenizer, ids) - expected).max() > 1e-3
    naive_dir = tmp_path / "naive"
    naive_dir.mkdir()
    folds = [load_file(str(p / "adapter_model.safetensors")) for p in fold_adapters.values()]
    save_file({name: sum(f[name] for f in folds) / len(folds) for name in folds[0]}, str(naive_dir / ADAPTER_WEIGHTS))
    shutil.copy(fold_adapters["fold0"] / "adapter_config.json", naive_dir / "adapter_config.json")
    naive = load_trained_adapter(_base(tiny_checkpoint, tiny_tokenizer), naive_dir)
    assert np.abs(_probabilities(naive, tiny_tokenizer, ids) - expected).max() > 1e-4


def test_soup_of_one_adapter_is_that_adapter(tiny_checkpoint, tiny_tokenizer, fold_adapters, tmp_path):
    from safetensors.torch import load_file

    from arenapref.evaluate.soup import make_soup

    make_soup([fold_adapters["fold0"]], tmp_path / "one")
    alone = load_file(str(fold_adapters["fold0"] / "adapter_model.safetensors"))
    soup = load_file(str(tmp_path / "one" / "adapter_model.safetensors"))
    assert alone.keys() == soup.keys()
    for name in alone:
        assert torch.equal(alone[name], soup[name]), name


def test_mismatched_adapters_are_one_line_errors(tiny_checkpoint, fold_adapters, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from arenapref.bench.folds import random_adapters
    from arenapref.evaluate.soup import make_soup

    other = random_adapters(
        tiny_checkpoint, RunConfig.from_config({"model": {"lora": {"layers": "all"}}}), ["all"], tmp_path / "o"
    )["all"]
    with pytest.raises(CheckpointError, match=r"layers \[0, 1, 2, 3\] differ") as caught:
        make_soup([fold_adapters["fold0"], other], tmp_path / "soup")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "soup").exists()  # nothing half-written

    modules = random_adapters(
        tiny_checkpoint,
        RunConfig.from_config({"model": {"lora": {"target_modules": ["q_proj", "o_proj"]}}}),
        ["qo"],
        tmp_path / "o",
    )["qo"]
    with pytest.raises(CheckpointError, match="target modules"):
        make_soup([fold_adapters["fold0"], modules], tmp_path / "soup")

    head = tmp_path / "wide_head"
    shutil.copytree(fold_adapters["fold1"], head)
    tensors = load_file(str(head / "adapter_model.safetensors"))
    name = next(n for n in tensors if n.endswith("score.weight"))
    tensors[name] = torch.zeros(4, tensors[name].shape[1])
    save_file(tensors, str(head / "adapter_model.safetensors"))
    with pytest.raises(CheckpointError, match="differ in head shape"):
        make_soup([fold_adapters["fold0"], head], tmp_path / "soup")

    base = tmp_path / "other_base"
    shutil.copytree(fold_adapters["fold1"], base)
    config = json.loads((base / "adapter_config.json").read_text())
    (base / "adapter_config.json").write_text(json.dumps(dict(config, base_model_name_or_path="/m/Llama-3.1-8B")))
    with pytest.raises(CheckpointError, match="base Llama-3.1-8B differ"):
        make_soup([fold_adapters["fold0"], base], tmp_path / "soup")

    with pytest.raises(CheckpointError, match="not a trained adapter"):
        make_soup([fold_adapters["fold0"], tmp_path / "nowhere"], tmp_path / "soup")
