"""Hugging Face Trainer set up two ways, for comparison only; the pipeline never uses this code.

ORIGINAL is the notebook's: DataCollatorWithPadding over rows in dataset order (inference) or
shuffled (training), every batch padded to its longest row, fp32 on a CPU. `tuned` is what a user
after speed would pick: `train_sampling_strategy="group_by_length"` (LengthGroupedSampler),
prediction over rows sorted by length with the model cast to half precision once
(`bf16_full_eval`), the same batch shape as ours, and bf16 autocast in training where the hardware
multiplies it (the Trainer's mixed precision also on a CPU).
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class TrainerSetup:
    """How a Trainer comparison side is configured."""

    name: str
    batch_size: int = 4
    grad_accum: int = 4
    predict_batch_size: int = 8
    group_by_length: bool = False
    sort_for_prediction: bool = False
    mixed_precision_on_cpu: bool = False  # the Trainer's autocast also on a CPU (bf16 only)
    half_precision_eval: bool = False  # bf16_full_eval / fp16_full_eval: the model cast once for prediction


ORIGINAL = TrainerSetup("original")


def tuned(predict_batch_size: int, native_bf16: bool, batch_size: int = 4, grad_accum: int = 4) -> TrainerSetup:
    return TrainerSetup(
        "tuned Trainer",
        batch_size=batch_size,
        grad_accum=grad_accum,
        predict_batch_size=predict_batch_size,
        group_by_length=True,
        sort_for_prediction=True,
        mixed_precision_on_cpu=native_bf16,
        half_precision_eval=True,
    )


@dataclass
class TokenCount:
    real: int = 0
    computed: int = 0

    @property
    def padding_efficiency(self) -> float:
        return self.real / self.computed if self.computed else 0.0


class CountingCollator:
    """DataCollatorWithPadding that also counts real and padded tokens of every batch it builds."""

    def __init__(self, tokenizer):
        from transformers import DataCollatorWithPadding

        self.inner = DataCollatorWithPadding(tokenizer)
        self.count = TokenCount()

    def __call__(self, features):
        batch = self.inner(features)
        mask = batch["attention_mask"]
        self.count.real += int(mask.sum())
        self.count.computed += mask.numel()
        return batch


class RowsDataset(torch.utils.data.Dataset):
    def __init__(self, input_ids: Sequence[Sequence[int]], labels: Sequence[int] | None = None):
        self.input_ids = input_ids
        self.labels = labels

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict:
        item = {"input_ids": list(self.input_ids[index])}
        if self.labels is not None:
            item["labels"] = int(self.labels[index])
        return item


def _arguments(out_dir: str, device: torch.device, dtype: torch.dtype, setup: TrainerSetup, **overrides):
    from transformers import TrainingArguments

    mixed = device.type == "cuda" or (setup.mixed_precision_on_cpu and dtype == torch.bfloat16)
    return TrainingArguments(
        output_dir=out_dir,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_pin_memory=device.type == "cuda",
        use_cpu=device.type != "cuda",
        bf16=mixed and dtype == torch.bfloat16,
        fp16=mixed and dtype == torch.float16,
        **overrides,
    )


def trainer_predict(
    model,
    tokenizer,
    input_ids: Sequence[Sequence[int]],
    device: torch.device,
    dtype: torch.dtype,
    setup: TrainerSetup = ORIGINAL,
) -> tuple[np.ndarray, float, TokenCount]:
    """Probabilities (in the rows' order), seconds and token counts of Trainer.predict."""
    from transformers import Trainer

    from arenapref.model.modeling import is_quantized

    order = np.arange(len(input_ids))
    if setup.sort_for_prediction:
        order = np.argsort([len(x) for x in input_ids], kind="stable")
    collator = CountingCollator(tokenizer)
    half_eval = {}
    # A 4- or 8-bit model cannot be cast (bitsandbytes refuses it): it already computes in `dtype`,
    # and the Trainer's autocast (bf16/fp16 on CUDA) is what a user of one would run.
    if setup.half_precision_eval and dtype in (torch.bfloat16, torch.float16) and not is_quantized(model):
        # The Trainer's full half-precision evaluation casts the model it is given: a copy, so the
        # caller's model stays as trained.
        model = copy.deepcopy(model)
        half_eval = {"bf16_full_eval": dtype == torch.bfloat16, "fp16_full_eval": dtype == torch.float16}
    with tempfile.TemporaryDirectory() as out_dir:
        args = _arguments(
            out_dir, device, dtype, setup, per_device_eval_batch_size=setup.predict_batch_size, **half_eval
        )
        trainer = Trainer(model=model, args=args, data_collator=collator)
        start = time.perf_counter()
        output = trainer.predict(RowsDataset([input_ids[i] for i in order]))
        seconds = time.perf_counter() - start
    probs = np.empty((len(input_ids), output.predictions.shape[-1]), dtype=np.float64)
    probs[order] = torch.softmax(torch.as_tensor(output.predictions).float(), dim=-1).numpy()
    return probs, seconds, collator.count


def trainer_train(
    model,
    tokenizer,
    input_ids: Sequence[Sequence[int]],
    labels: Sequence[int],
    steps: int,
    learning_rate: float,
    warmup_ratio: float,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    setup: TrainerSetup = ORIGINAL,
) -> tuple[float, TokenCount]:
    """Train `model` in place for `steps` optimizer steps in one `train()` call; seconds and token counts."""
    from transformers import Trainer

    collator = CountingCollator(tokenizer)
    with tempfile.TemporaryDirectory() as out_dir:
        args = _arguments(
            out_dir,
            device,
            dtype,
            setup,
            per_device_train_batch_size=setup.batch_size,
            gradient_accumulation_steps=setup.grad_accum,
            train_sampling_strategy="group_by_length" if setup.group_by_length else "random",
            max_steps=steps,
            learning_rate=learning_rate,
            lr_scheduler_type="linear",
            warmup_steps=int(warmup_ratio * steps),
            optim="adamw_torch",
            seed=seed,
        )
        trainer = Trainer(model=model, args=args, train_dataset=RowsDataset(input_ids, labels), data_collator=collator)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    model.eval()
    return seconds, collator.count
