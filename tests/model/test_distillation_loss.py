"""The loss with a teacher's probabilities: (1 - w) CE(hard label) + w KL(teacher || model), a row
without a hard label on KL alone, a row without a teacher on CE alone; hard labels only keep the
cross entropy as it was."""

from __future__ import annotations

import math

import pytest
import torch

from arenapref.data.parsing import NO_LABEL
from arenapref.model.heads import ClassifierHead, class_loss

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 1.0, 3.0], [-1.0, 2.0, 1.0]])
LABELS = [0, NO_LABEL, 2, 1]
NAN = float("nan")
TEACHER = [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [NAN, NAN, NAN], [0.0, 0.9, 0.1]]


def by_hand(weight: float) -> float:
    """The formula row by row in plain floats."""
    total = 0.0
    for logits, label, teacher in zip(LOGITS.tolist(), LABELS, TEACHER, strict=True):
        norm = math.log(sum(math.exp(x) for x in logits))
        log_q = [x - norm for x in logits]
        cross_entropy = -log_q[label] if label >= 0 else None
        pairs = zip(teacher, log_q, strict=True)
        kl = None if math.isnan(teacher[0]) else sum(p * (math.log(p) - lq) for p, lq in pairs if p > 0)
        if kl is None:
            total += cross_entropy
        elif cross_entropy is None:
            total += kl
        else:
            total += (1 - weight) * cross_entropy + weight * kl
    return total / len(LABELS)


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_loss_equals_the_formula_on_a_hand_computed_batch(weight):
    batch = ClassifierHead().collate([[1, 2]] * 4, LABELS, pad_id=0, soft_labels=TEACHER)
    loss = class_loss(torch.log_softmax(LOGITS, dim=-1), batch, smoothing=0.0, distill_weight=weight)
    assert loss.item() == pytest.approx(by_hand(weight), rel=1e-6)


def test_a_row_without_a_hard_label_trains_on_kl_alone():
    teacher = torch.tensor([[0.1, 0.6, 0.3]])
    log_q = torch.log_softmax(LOGITS[1:2].clone().requires_grad_(True), dim=-1)
    batch = {"labels": torch.tensor([NO_LABEL]), "soft_labels": teacher}
    loss = class_loss(log_q, batch, smoothing=0.1, distill_weight=0.25)  # neither w nor smoothing reaches it
    expected = (teacher * (teacher.log() - log_q)).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_hard_labels_alone_keep_the_smoothed_cross_entropy():
    labels = torch.tensor([0, 1, 2, 1])
    batch = ClassifierHead().collate([[1, 2]] * 4, labels.tolist(), pad_id=0)
    assert "soft_labels" not in batch
    loss = class_loss(torch.log_softmax(LOGITS, dim=-1), batch, smoothing=0.1)
    expected = torch.nn.functional.cross_entropy(LOGITS, labels, label_smoothing=0.1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
