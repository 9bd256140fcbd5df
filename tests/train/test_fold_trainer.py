"""The Trainer-based fold training: accumulation groups inside chunks, token counts from the CPU masks,
and the model handed back as it came (no autocast wrapper left on its forward)."""

from __future__ import annotations

import numpy as np
import pytest

from arenapref.config import RunConfig
from arenapref.train.fold_trainer import grouped_batches
from arenapref.train.training import plan_steps


def test_a_chunks_short_last_group_is_filled_in_front_and_never_straddles_chunks():
    batch = [np.array([k, k + 100]) for k in range(7)]
    chunks = [batch[:5], batch[5:]]
    settings = RunConfig.from_config({"train": {"grad_accum": 3}}).train
    grouped = grouped_batches(chunks, 3)
    b = [x.tolist() for x in batch]
    assert grouped == [b[0], b[1], b[2], [], b[3], b[4], [], b[5], b[6]]
    assert len(grouped) == 3 * sum(plan_steps(chunks, settings))  # one optimizer step per 3 batches


@pytest.mark.slow
def test_training_counts_tokens_on_the_masks_and_restores_the_forward(tiny_checkpoint, tmp_path):
    from arenapref.data.preprocess import preprocess_train
    from arenapref.data.sample_data import write_sample
    from arenapref.model.batching import length_grouped_chunks, padded_tokens
    from arenapref.model.modeling import attach_new_adapter
    from arenapref.model.runtime import Runtime
    from arenapref.train.training import Examples, train_adapter

    train = {"batch_size": 4, "grad_accum": 3, "chunk_size": 8, "precision": "bf16"}
    run = RunConfig.from_config({"model": {"max_length": 96}, "train": train})
    rt = Runtime.create(run, tiny_checkpoint)
    table, _ = preprocess_train(write_sample(tmp_path / "sample", n_train=30, n_test=2, seed=4)["train"], 2, 0)
    input_ids = rt.encode(table)
    model = attach_new_adapter(rt.base_model(run, tiny_checkpoint), run.model)
    examples = Examples(input_ids, table["label"].to_list(), rt.tokenizer.pad_token_id)
    result = train_adapter(model, examples, run.train, rt.device, rt.dtype, tmp_path / "resume", {"c": "x"})

    lengths = [len(x) for x in input_ids]
    chunks = length_grouped_chunks(lengths, 4, 8, 1, run.train.seed)
    assert result.tokens == sum(lengths)  # one epoch: every row once
    assert result.tokens_computed == padded_tokens(lengths, [batch for chunk in chunks for batch in chunk])
    assert result.optimizer_steps == sum(plan_steps(chunks, run.train))
    assert [entry["step"] for entry in result.history] == list(range(1, result.optimizer_steps + 1))
    # bf16 had accelerate wrap the forward in its autocast: prediction gets the model's own back.
    assert model.forward.__func__ is type(model).forward and not model.training
