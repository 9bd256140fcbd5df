"""Measuring memory where torch.cuda's counters do not exist: peak bytes of live tensors on any
device, and the bytes autograd keeps for the backward pass. The planner is checked against these
on a CPU, and against torch.cuda.max_memory_allocated on a GPU."""

from __future__ import annotations

import contextlib
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class TensorMemoryTracker(TorchDispatchMode):
    """Peak bytes of the tensor storages that operators create while it is active.

    Each new storage is counted once (views share it) and uncounted when it is freed, which a
    finalizer on the storage tells. Storages that existed before (the model's weights) are not
    counted: add them yourself. Buffers an operator allocates and frees internally are invisible.
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: set[tuple] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        # An output on an input's storage is a view or an in-place result: no new memory.
        inputs = {_storage_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor) and _storage_key(leaf) not in inputs:
                self._track(leaf)
        return out

    def _track(self, tensor: torch.Tensor) -> None:
        key = _storage_key(tensor)
        if key is None or key in self._live:
            return
        storage = tensor.untyped_storage()
        nbytes = storage.nbytes()
        self._live.add(key)
        self.current += nbytes
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._release, key, nbytes)

    def _release(self, key: tuple, nbytes: int) -> None:
        if key in self._live:
            self._live.discard(key)
            self.current -= nbytes

    def reset_peak(self) -> None:
        self.peak = self.current


def _storage_key(tensor: torch.Tensor) -> tuple | None:
    """Identity of the memory behind a tensor (device and address); None for storage-less tensors."""
    try:
        storage = tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse and other storage-less tensors
        return None
    if storage.nbytes() == 0:
        return None
    return (str(storage.device), storage.data_ptr())


@contextlib.contextmanager
def saved_for_backward(model=None):
    """Bytes of the distinct storages autograd saves for the backward pass inside the block:
    `with saved_for_backward(model) as saved: loss = model(...)`, then `saved["bytes"]`. The model's
    own parameters and buffers (and views of them) are left out: they are memory anyway."""
    resident = {_storage_key(t) for t in [*model.parameters(), *model.buffers()]} if model is not None else set()
    seen: set[tuple] = set()
    result = {"bytes": 0, "tensors": 0}

    def pack(tensor: torch.Tensor):
        key = _storage_key(tensor)
        if key is not None and key not in resident and key not in seen:
            seen.add(key)
            result["bytes"] += tensor.untyped_storage().nbytes()
            result["tensors"] += 1
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield result


def resident_bytes(model) -> int:
    """Bytes of a model's parameters and buffers (4-bit weights as packed), each storage once."""
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        storage = tensor.untyped_storage()
        if id(storage) not in seen:
            seen.add(id(storage))
            total += storage.nbytes()
        quant_state = getattr(tensor, "quant_state", None)  # bitsandbytes keeps absmax and codes beside it
        if quant_state is not None:
            for extra in _quant_state_tensors(quant_state):
                if id(extra.untyped_storage()) not in seen:
                    seen.add(id(extra.untyped_storage()))
                    total += extra.untyped_storage().nbytes()
    return total


def _quant_state_tensors(state) -> list[torch.Tensor]:
    tensors = [getattr(state, name, None) for name in ("absmax", "code")]
    nested = getattr(state, "state2", None)
    if nested is not None:
        tensors += _quant_state_tensors(nested)
    return [t for t in tensors if isinstance(t, torch.Tensor)]


def optimizer_state_bytes(optimizer) -> int:
    return sum(
        v.untyped_storage().nbytes()
        for state in optimizer.state.values()
        for v in state.values()
        if isinstance(v, torch.Tensor)
    )


def measure_training_step(
    model, head, batch: dict[str, torch.Tensor], dtype: torch.dtype, optimizer, scaler=None
) -> dict[str, int]:
    """Peak bytes of one training step after a first one has created the optimizer's state:
    torch.cuda's own counter on a GPU; on a CPU the model's storages, the optimizer's state and the
    tracked peak of everything the step allocates. Also the bytes saved for the backward pass."""
    device = next(model.parameters()).device
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    result: dict[str, int] = {}
    for step in range(2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        tracker = TensorMemoryTracker() if device.type != "cuda" else None
        with tracker if tracker is not None else contextlib.nullcontext():
            with saved_for_backward(model) as saved:
                with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                    loss = head.loss(model, batch, 0.0)
            scaler.scale(loss).backward()
            del loss
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        if step == 1:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                result["peak"] = torch.cuda.max_memory_allocated(device)
            else:
                result["peak"] = resident_bytes(model) + optimizer_state_bytes(optimizer) + tracker.peak
            result["saved_activations"] = saved["bytes"]
    return result


def measure_inference_batch(
    model, head, input_ids: torch.Tensor, attention_mask: torch.Tensor, dtype: torch.dtype
) -> int:
    """Peak bytes while predicting one batch, counted as measure_training_step counts them."""
    device = next(model.parameters()).device
    model.eval()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    tracker = TensorMemoryTracker() if device.type != "cuda" else None
    with tracker if tracker is not None else contextlib.nullcontext(), torch.inference_mode():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            head.class_logits(model, input_ids.to(device), attention_mask.to(device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    return resident_bytes(model) + tracker.peak
