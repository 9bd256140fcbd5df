"""The transformers.Trainer that runs one fold's training (arenapref.train.training.train_adapter sets it up).

What it changes in the Trainer, and why:
- batches: ours (the length-grouped sampler's order, cut into chunks), not a sampler of its own.
  The Trainer groups every `gradient_accumulation_steps` batches into an optimizer step, so a chunk
  whose last group is short gets empty filler batches at the front of that group: groups never
  straddle a chunk, and the real batches come last, where a DDP run would synchronise the gradients.
- loss: the head's (`head.loss`), each batch weighted by its rows over the group's rows, which the
  group's batches carry as plain numbers (counted on the CPU: no device sync per micro-batch).
- autocast: around the whole loss, since the sft head calls the decoder and its output layer
  directly, not the model's forward, which is all that accelerate wraps.
- steps: reports and the history number the fold's optimizer steps, continuing across a resume;
  the Trainer counts from 0 in each run.
- the device: the one the job claimed (a GPU slot), where transformers would take cuda:0 and every
  visible GPU.
Taken from the Trainer where our loop differed: the history's `lr` is the rate a step applied (our
loop logged the next step's), and a step the fp16 loss scaler skips (an overflow) does not advance
the schedule (ours did). Otherwise the same seed gives the same numbers as our loop did.
"""

from __future__ import annotations

import bisect
import itertools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.integrations import TensorBoardCallback
from transformers.trainer_callback import PrinterCallback


def grouped_batches(chunks: Sequence[Sequence[np.ndarray]], grad_accum: int) -> list[list[int]]:
    """The chunks' batches in order, each chunk's last accumulation group filled up to `grad_accum`
    batches with empty ones placed before its real batches."""
    batches: list[list[int]] = []
    for chunk in chunks:
        for start in range(0, len(chunk), grad_accum):
            group = chunk[start : start + grad_accum]
            batches += [[] for _ in range(grad_accum - len(group))] + [batch.tolist() for batch in group]
    return batches


def fold_arguments(settings, device: torch.device, dtype: torch.dtype, output_dir: Path, report_to: str, steps: int):
    """TrainingArguments of one fold's run of `steps` optimizer steps (logged every step, no Trainer
    checkpoints: the resume points are ours)."""
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=device.type == "cpu",
        seed=settings.seed,
        logging_strategy="steps",
        logging_steps=1,
        logging_nan_inf_filter=False,  # its isnan check reads every micro-batch's loss: a device sync each
        save_strategy="no",
        report_to=report_to,
        disable_tqdm=True,
        dataloader_pin_memory=device.type == "cuda",
        include_num_input_tokens_seen="no",
    )
    if device.type == "cuda":
        # Outside a distributed launch transformers trains on cuda:0 (making it the current device) and
        # spreads over every visible GPU with DataParallel; this fold holds one GPU slot (runtime.claim_device).
        args.__dict__["_setup_devices"] = device
        args._n_gpu = 1
        torch.cuda.set_device(device)
    return args


class FoldTrainer(Trainer):
    """A Trainer over our batches and loss; `steps_before` is the optimizer steps of earlier runs of the fold."""

    # compute_loss weights each batch by its share of the group's rows: the sum is the group's loss.
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        *,
        examples,
        head,
        batches: list[list[int]],
        dtype: torch.dtype,
        smoothing: float,
        steps_before: int,
        distill_weight: float = 0.0,
        **kwargs,
    ):
        self.examples = examples
        self.head = head
        self.batches = batches
        self.dtype = dtype
        self.smoothing = smoothing
        self.distill_weight = distill_weight
        self.steps_before = steps_before
        self.tokens_seen = self.tokens_computed = 0
        super().__init__(**kwargs)
        # disable_tqdm turns the Trainer's progress bar into a print of every log: ours is a tqdm bar.
        self.remove_callback(PrinterCallback)
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback):
                from torch.utils.tensorboard import SummaryWriter

                # One folder for every run of the fold, where a run hides what an interrupted one logged
                # after the resume point: the curve continues as the training did.
                callback.tb_writer = SummaryWriter(self.args.output_dir, purge_step=steps_before + 1)

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        if self.args.fp16 and self.accelerator.scaler is None:
            # accelerate scales fp16 losses on accelerators only; fp16 on a CPU (how the tests run the
            # T4 path) needs the same scaler, and native_amp for accelerate to unscale before clipping.
            self.accelerator.scaler = torch.amp.GradScaler(self.args.device.type)
            self.accelerator.native_amp = True

    def train(self, *args, **kwargs):
        try:
            return super().train(*args, **kwargs)
        finally:
            # accelerate wrapped the model's forward in its autocast; prediction sets its own precision.
            self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        return self.accelerator.scaler

    def collate(self, rows: list[int]) -> dict:
        if not rows:
            return {"rows": 0}  # a filler batch
        ex = self.examples
        labels = [ex.labels[i] for i in rows]
        if ex.soft_labels is None:
            batch = self.head.collate([ex.input_ids[i] for i in rows], labels, ex.pad_id)
        else:
            soft = [ex.soft_labels[i] for i in rows]
            batch = self.head.collate([ex.input_ids[i] for i in rows], labels, ex.pad_id, soft_labels=soft)
        mask = batch["attention_mask"]
        return {**batch, "rows": len(rows), "tokens": int(mask.sum()), "padded": mask.numel()}

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        loader = torch.utils.data.DataLoader(
            self.train_dataset,  # row numbers, which collate turns into a batch
            batch_sampler=self.batches,
            collate_fn=self.collate,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device) -> tuple[list, int]:
        batches = list(itertools.islice(epoch_iterator, num_batches))
        return batches, sum(batch["rows"] for batch in batches)

    def training_step(self, model, inputs: dict, num_items_in_batch: int | None = None) -> torch.Tensor:
        if not inputs["rows"]:
            return torch.zeros((), device=self.args.device)  # a filler: nothing to compute
        self.tokens_seen += inputs.pop("tokens")
        self.tokens_computed += inputs.pop("padded")
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs: dict, return_outputs=False, num_items_in_batch: int | None = None):
        rows = inputs.pop("rows")
        loss = self.head.loss(model, inputs, self.smoothing, self.distill_weight)
        return loss * rows / num_items_in_batch  # a short batch counts for what it holds

    def autocast_smart_context_manager(self, cache_enabled: bool | None = True):
        return torch.autocast(
            self.args.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32, cache_enabled=cache_enabled
        )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        self.state.global_step += self.steps_before
        try:
            super().log(logs, start_time)
        finally:
            self.state.global_step -= self.steps_before


class ChunkCallback(TrainerCallback):
    """Per chunk: the seed at its start, a resume point at its end (`save(chunks_done)`); per step:
    the history entry and the progress bar.

    `chunk_ends[c]` is the fold's optimizer step that ends chunk c; the history is our list, which
    the resume points save."""

    def __init__(
        self,
        trainer: FoldTrainer,
        chunk_ends: Sequence[int],
        history: list[dict],
        seed: int,
        save: Callable[[int], None],
    ):
        self.trainer = trainer
        self.chunk_ends = list(chunk_ends)
        self.history = history
        self.seed = seed
        self.save = save
        self.bar = None

    def chunk_of(self, step: int) -> int:
        return bisect.bisect_left(self.chunk_ends, step)

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = tqdm(
            total=self.chunk_ends[-1],
            initial=self.trainer.steps_before,
            desc="train",
            unit="step",
            file=sys.stderr,
            mininterval=1.0 if sys.stderr.isatty() else 15.0,
        )

    def on_step_begin(self, args, state, control, **kwargs):
        step = self.trainer.steps_before + state.global_step + 1
        chunk = self.chunk_of(step)
        if step == (self.chunk_ends[chunk - 1] + 1 if chunk else 1):
            # Seeding per chunk makes dropout the same whether or not the run resumed.
            torch.manual_seed(self.seed + chunk)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Here, not in on_step_end: the Trainer reads a step's loss and gradient norm when it logs, after it.
        if "loss" not in logs:
            return  # the run's summary
        step = state.global_step  # the fold's (FoldTrainer.log)
        chunk = self.chunk_of(step)
        entry = {
            "step": step,
            "chunk": chunk,
            "loss": round(logs["loss"], 6),
            "lr": logs["learning_rate"],  # the rate this step applied
            "grad_norm": round(float(logs["grad_norm"]), 6),
        }
        if self.trainer.scaler is not None:
            entry["loss_scale"] = self.trainer.scaler.get_scale()
        self.history.append(entry)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{entry['loss']:.4f}", chunk=f"{chunk + 1}/{len(self.chunk_ends)}")
        if step == self.chunk_ends[chunk]:
            self.save(chunk + 1)

    def on_train_end(self, args, state, control, **kwargs):
        self.bar.close()
