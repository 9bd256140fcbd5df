"""Two ways to read a preference out of the model (`model.head`).

classifier: a 3-way linear layer on the last real token (AutoModelForSequenceClassification).
sft: the language model itself, trained SFT-style to complete an instruction with one label token
(" A", " B" or " tie"); the loss covers the completion only, and at inference the probabilities
are the softmax over those three tokens' logits at the last prompt position.

Both heads share the training loop, the batching and the outputs; a head supplies how a batch is
built, its loss and its three class logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from arenapref.errors import CheckpointError, ConfigError
from arenapref.model.batching import pad_batch

IGNORE_INDEX = -100  # label of tokens outside the completion (the Hugging Face / trl convention)
LABEL_WORDS = (" A", " B", " tie")  # in LABEL_COLUMNS order: model A wins, model B wins, tie
SFT_INSTRUCTION = "Which response did the user prefer? Read the conversation, then answer A, B or tie.\n\n"
SFT_QUESTION = "\n\nPreferred:"


def unwrapped(model):
    """The transformers model inside a peft wrapper, or the model itself (an adapter merged for inference)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_mask(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """The attention mask to give the decoder: none when every row's padding is on its right.

    Under the causal mask a real token attends only to the tokens before it, never to padding on
    its right, so every real position (and the last one, which is scored) computes the same
    without a padding mask. Without one, attention takes its causal path: SDPA's flash kernels on
    CUDA (an explicit mask sends it to a slower kernel with an L x L mask per row) and no mask
    built per batch. A batch padded otherwise keeps its mask.
    """
    right_padded = bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())
    return None if right_padded else attention_mask


def smoothed_nll(true_log_probs: torch.Tensor, class_log_probs: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross entropy against (1 - smoothing) on the true class plus smoothing / 3 on each of the
    three classes; `class_log_probs` holds the three classes' log-probabilities per row."""
    return -((1 - smoothing) * true_log_probs + smoothing * class_log_probs.mean(dim=1)).mean()


def distilled_nll(
    class_log_probs: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, weight: float, smoothing: float
) -> torch.Tensor:
    """The mean over rows of (1 - w) x cross entropy on the hard label (smoothed as smoothed_nll)
    plus w x KL(teacher || model) over the three classes. A row without a hard label (label < 0)
    trains on the KL term alone, a row without a teacher (NaN probabilities) on the cross entropy
    alone. `class_log_probs` holds the model's three log-probabilities per row."""
    has_hard = labels >= 0
    has_teacher = ~torch.isnan(teacher).any(dim=1)
    true = class_log_probs.gather(1, labels.clamp(min=0)[:, None]).squeeze(1)
    cross_entropy = -((1 - smoothing) * true + smoothing * class_log_probs.mean(dim=1))
    probs = torch.nan_to_num(teacher.to(class_log_probs.dtype))
    kl = (torch.xlogy(probs, probs) - probs * class_log_probs).sum(dim=1)  # 0 log 0 = 0
    w = torch.where(has_teacher, torch.where(has_hard, weight, 1.0), 0.0).to(class_log_probs.dtype)
    return ((1 - w) * torch.where(has_hard, cross_entropy, 0.0) + w * kl).mean()


def class_loss(
    class_log_probs: torch.Tensor, batch: dict[str, torch.Tensor], smoothing: float, distill_weight: float = 0.0
) -> torch.Tensor:
    """The training loss from the three classes' log-probabilities: the smoothed cross entropy, or
    with a teacher's probabilities in the batch ("soft_labels") distilled_nll."""
    labels = batch["labels"].to(class_log_probs.device)
    if "soft_labels" not in batch:
        true = class_log_probs.gather(1, labels[:, None]).squeeze(1)
        return smoothed_nll(true, class_log_probs, smoothing)
    teacher = batch["soft_labels"].to(class_log_probs.device)
    return distilled_nll(class_log_probs, labels, teacher, distill_weight, smoothing)


class ClassifierHead:
    name = "classifier"
    instruction = ""
    question = ""
    completion_tokens = 0

    def collate(
        self,
        rows: Sequence[Sequence[int]],
        labels: Sequence[int],
        pad_id: int,
        soft_labels: Sequence[Sequence[float]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """A padded batch; `soft_labels` (a teacher's three probabilities a row, NaN where a row has
        none) is added only when given, so that hard labels alone keep today's loss."""
        input_ids, attention_mask = pad_batch(rows, pad_id)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": torch.as_tensor(list(labels), dtype=torch.long),
        }
        if soft_labels is not None:
            batch["soft_labels"] = torch.as_tensor([list(p) for p in soft_labels], dtype=torch.float32)
        return batch

    def loss(
        self, model, batch: dict[str, torch.Tensor], smoothing: float, distill_weight: float = 0.0
    ) -> torch.Tensor:
        mask = decoder_mask(batch["attention_mask"])
        logits = model(input_ids=batch["input_ids"], attention_mask=mask, use_cache=False).logits
        return class_loss(torch.log_softmax(logits.float(), dim=-1), batch, smoothing, distill_weight)

    def class_logits(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return model(input_ids=input_ids, attention_mask=decoder_mask(attention_mask), use_cache=False).logits

    def scored_positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int) -> torch.Tensor:
        """Where transformers' sequence classifier reads each row: its rightmost non-padding token."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return (positions * (input_ids != pad_id)).argmax(dim=-1)

    def logits_at(self, model, final_hidden: torch.Tensor) -> torch.Tensor:
        """Class logits from the final hidden state of each row's last token (the active adapter's layer)."""
        return unwrapped(model).score(final_hidden)


class SftHead:
    """Causal-LM head. Training examples are trl prompt-completion examples: the prompt's labels are
    IGNORE_INDEX and trl's language-modelling collator pads them, so only the label token is learned."""

    name = "sft"
    instruction = SFT_INSTRUCTION
    question = SFT_QUESTION
    completion_tokens = 1

    def __init__(self, tokenizer):
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self.label_ids = label_token_ids(tokenizer)
        self.collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)

    def collate(
        self,
        rows: Sequence[Sequence[int]],
        labels: Sequence[int],
        pad_id: int,
        soft_labels: Sequence[Sequence[float]] | None = None,
    ) -> dict[str, torch.Tensor]:
        if soft_labels is not None:
            raise ConfigError(
                "a teacher's probabilities (data.soft_labels) train the classifier head; set model.head: classifier"
            )
        examples = []
        for prompt, label in zip(rows, labels, strict=True):
            completion = [self.label_ids[label]]
            examples.append({"input_ids": [*prompt, *completion], "labels": [IGNORE_INDEX] * len(prompt) + completion})
        return self.collator(examples)

    def _hidden(self, model, input_ids, attention_mask) -> torch.Tensor:
        # The decoder without the vocabulary projection: only the positions that are scored get one.
        return (
            unwrapped(model)
            .model(input_ids=input_ids, attention_mask=decoder_mask(attention_mask), use_cache=False)
            .last_hidden_state
        )

    def _lm_head(self, model) -> torch.nn.Module:
        return unwrapped(model).lm_head

    def loss(
        self, model, batch: dict[str, torch.Tensor], smoothing: float, distill_weight: float = 0.0
    ) -> torch.Tensor:
        hidden = self._hidden(model, batch["input_ids"], batch["attention_mask"])
        # Position t predicts token t + 1: keep the positions whose next token is in the completion.
        targets = batch["labels"][:, 1:].to(hidden.device)
        scored = targets != IGNORE_INDEX
        # Normalised over the whole vocabulary, as SFT trains; smoothing goes to the label tokens only.
        log_probs = torch.log_softmax(self._lm_head(model)(hidden[:, :-1][scored]).float(), dim=-1)
        true = log_probs.gather(1, targets[scored][:, None]).squeeze(1)
        label_ids = torch.as_tensor(self.label_ids, device=log_probs.device)
        return smoothed_nll(true, log_probs[:, label_ids], smoothing)

    def class_logits(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self._hidden(model, input_ids, attention_mask)
        last = self.scored_positions(input_ids, attention_mask)
        return self.logits_at(model, hidden[torch.arange(hidden.shape[0], device=hidden.device), last])

    def scored_positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
        """Each row's last prompt token (rows are right-padded)."""
        return attention_mask.sum(dim=1) - 1

    def logits_at(self, model, final_hidden: torch.Tensor) -> torch.Tensor:
        """The three label tokens' logits from the final hidden state of each row's last prompt token."""
        weight = self._lm_head(model).weight[list(self.label_ids)]
        with torch.autocast(final_hidden.device.type, enabled=False):  # three logits: fp32 costs nothing
            return final_hidden.float() @ weight.float().T


def label_token_ids(tokenizer) -> tuple[int, int, int]:
    ids = []
    for word in LABEL_WORDS:
        encoded = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise CheckpointError(
                f"the sft head needs {word!r} to be one token, but this tokenizer splits it into {encoded}; "
                "use model.head: classifier with this checkpoint"
            )
        ids.append(encoded[0])
    return tuple(ids)


def make_head(name: str, tokenizer) -> ClassifierHead | SftHead:
    if name == "sft":
        return SftHead(tokenizer)
    if name == "classifier":
        return ClassifierHead()
    raise ValueError(f"unknown model.head {name!r} (classifier or sft)")
