"""The original notebook's way of training and predicting, for comparison only.

Hugging Face Trainer with DataCollatorWithPadding over rows in dataset order (inference) or
shuffled (training): every batch is padded to its longest row. The pipeline itself never uses
this code.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


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


def _arguments(out_dir: str, device: torch.device, dtype: torch.dtype, **overrides):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=out_dir,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_pin_memory=device.type == "cuda",
        use_cpu=device.type != "cuda",
        bf16=device.type == "cuda" and dtype == torch.bfloat16,
        fp16=device.type == "cuda" and dtype == torch.float16,
        **overrides,
    )


def trainer_predict(
    model, tokenizer, input_ids: Sequence[Sequence[int]], device: torch.device, dtype: torch.dtype, batch_size: int = 8
) -> tuple[np.ndarray, float, TokenCount]:
    """Probabilities, seconds and token counts of Trainer.predict with batch 8 in dataset order."""
    from transformers import Trainer

    collator = CountingCollator(tokenizer)
    with tempfile.TemporaryDirectory() as out_dir:
        args = _arguments(out_dir, device, dtype, per_device_eval_batch_size=batch_size)
        trainer = Trainer(model=model, args=args, data_collator=collator)
        start = time.perf_counter()
        output = trainer.predict(RowsDataset(input_ids))
        seconds = time.perf_counter() - start
    logits = torch.as_tensor(output.predictions).float()
    return torch.softmax(logits, dim=-1).numpy(), seconds, collator.count


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
    batch_size: int = 4,
    grad_accum: int = 4,
) -> tuple[float, TokenCount]:
    """Train `model` in place for `steps` optimizer steps the notebook's way; seconds and token counts."""
    from transformers import Trainer

    collator = CountingCollator(tokenizer)
    with tempfile.TemporaryDirectory() as out_dir:
        args = _arguments(
            out_dir,
            device,
            dtype,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=grad_accum,
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
