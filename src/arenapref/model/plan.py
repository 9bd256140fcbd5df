"""A plan of memory and time before hours of GPU work start.

From the checkpoint's config (the model is built on the meta device: no weights are read), the run
config and a GPU (detected, or one of the 16/24/40/80 GB classes), it predicts the peak memory of a
training step and of an inference batch, byte by byte of what PyTorch allocates, and the time a fold
takes from its floating-point operations. Each term below names the tensors it stands for; the
terms were checked against measured peaks (tests/model/test_plan.py on a CPU, `make gpu-check` on a GPU).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

from arenapref.config import RunConfig
from arenapref.model.batching import rows_per_batch
from arenapref.model.cpu_attention import SUPPORTED_MODEL_TYPES as SLICED_MODEL_TYPES
from arenapref.model.cpu_attention import largest_slice

GIB = 2**30
# What a CUDA process holds outside torch's allocator (context, kernels, cuBLAS workspace), and the
# share the caching allocator loses to rounding and fragmentation: a plan must leave both free.
CUDA_CONTEXT_BYTES = int(0.6 * GIB)
FRAGMENTATION = 0.10
# Share of a GPU's dense matrix-multiply peak that a step reaches; 4-bit weights are dequantized
# per matmul, so less than plain bf16. Replaced by `make gpu-check`'s measurement when given.
TRAIN_EFFICIENCY = 0.35
PREDICT_EFFICIENCY = 0.45
# Real tokens over padded tokens of length-grouped training batches and of length-sorted prediction
# batches (measured by the benchmark: 0.95 both).
TRAIN_PADDING_EFFICIENCY = 0.95
PREDICT_PADDING_EFFICIENCY = 0.95


@dataclass(frozen=True)
class GpuClass:
    name: str
    memory_gib: float
    capability: tuple[int, int]
    dense_tflops: float  # fp16/bf16 tensor-core peak without sparsity, from the vendors' data sheets
    train_efficiency: float = TRAIN_EFFICIENCY
    predict_efficiency: float = PREDICT_EFFICIENCY


# A T4 reaches far less of its data-sheet peak (70 W cap, 4-bit dequantization in fp16): public
# Kaggle notebooks scored one 9B 4-bit model over the 25,000 test rows in about 4.5 hours on 2 x T4,
# about 9 TFLOP/s a card, 14 % of its 65.
T4_PREDICT_EFFICIENCY = 0.14


# Architectures to plan for before their weights are downloaded (`scripts/plan.py --shape`), from
# each model's published config.json: meta-llama/Llama-3.1-8B, google/gemma-2-9b, Qwen/Qwen2.5-7B,
# mistralai/Mistral-7B-v0.3.
KNOWN_SHAPES = {
    "llama-3.1-8b": {
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
    },
    "gemma-2-9b": {
        "model_type": "gemma2",
        "vocab_size": 256000,
        "hidden_size": 3584,
        "intermediate_size": 14336,
        "num_hidden_layers": 42,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": True,
        "sliding_window": 4096,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
    },
    "qwen2.5-7b": {
        "model_type": "qwen2",
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
        "use_sliding_window": False,
        "sliding_window": 131072,
        "max_window_layers": 28,
    },
    "mistral-7b": {
        "model_type": "mistral",
        "vocab_size": 32768,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": False,
        "sliding_window": None,
    },
}

GPU_CLASSES = {
    16: GpuClass("T4 16 GB", 15.0, (7, 5), 65.0, train_efficiency=0.11, predict_efficiency=T4_PREDICT_EFFICIENCY),
    24: GpuClass("A10 24 GB", 22.0, (8, 6), 125.0),
    40: GpuClass("A100 40 GB", 39.4, (8, 0), 312.0),
    80: GpuClass("A100 80 GB", 79.1, (8, 0), 312.0),
}


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs of an architecture, counted on a model built on the meta device."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    layer_linear_params: int  # per decoder layer: the matrices quantization packs
    other_params: int  # embeddings, norms, an untied language-model head: kept in the load dtype
    head_params: int  # the classification layer (fp32) or 0 for the sft head
    lora_inputs: tuple[int, ...]  # in_features of each adapted matrix of one layer
    lora_outputs: tuple[int, ...]
    model_type: str = "llama"
    # Attention implementations the model class runs (modeling.supported_attention) and the run's
    # model.attn_implementation: together with the device they decide which one a run gets.
    attention_support: tuple[str, ...] = ("eager", "sdpa", "flex_attention")
    attention_requested: str = "auto"
    softcapping: bool = False  # attention scores capped by tanh (Gemma-2), as the run would have them
    # The masks a forward pass builds, one per kind of layer: full causal, and sliding_attention for
    # layers that attend within `sliding_window` tokens (Gemma-2's alternate layers, Mistral's all).
    mask_kinds: tuple[str, ...] = ("full_attention",)
    sliding_window: int | None = None
    norms_per_layer: int = 2  # RMSNorms in a decoder layer (Gemma-2 has four)

    def attention(self, device: str) -> str:
        """The implementation a training run (and inference on CUDA) gets on `device`."""
        from arenapref.model.modeling import choose_attention

        return choose_attention(self.attention_requested, self.attention_support, device, self.model_type)[0]

    def inference_attention(self, device: str) -> str:
        """On a CPU inference computes Llama attention in slices (modeling.inference_precision) and
        every other architecture's eagerly."""
        if device == "cpu":
            return "sliced" if self.model_type in SLICED_MODEL_TYPES else "eager"
        return self.attention(device)

    def mask_bytes(self, attention: str, rows: int, length: int, element_bytes: int) -> int:
        """The decoder's masks, alive through the whole pass. Eager attention adds a float mask of
        every row's L x L positions per kind; sdpa takes a boolean L x L mask (shared by the rows)
        only for windows shorter than the rows, and right-padded full causal rows need none; flex
        attention's block masks and the CPU slices' masks are small."""
        if attention == "eager":
            return len(self.mask_kinds) * rows * length * length * element_bytes
        if attention == "sdpa" and "sliding_attention" in self.mask_kinds:
            window = self.sliding_window
            return length * length if window is not None and window < length else 0
        return 0

    @classmethod
    def from_config(cls, model_config, run: RunConfig) -> ModelShape:
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        from arenapref.model.modeling import supported_attention, turn_off_softcapping

        model_config = copy.deepcopy(model_config)
        if not run.model.attn_softcapping:
            turn_off_softcapping(model_config)
        with torch.device("meta"):
            if run.model.head == "sft":
                model = AutoModelForCausalLM.from_config(model_config)
            else:
                model_config.num_labels = 3
                model = AutoModelForSequenceClassification.from_config(model_config)
        body = getattr(model, model.base_model_prefix)
        layer = body.layers[0]
        linears = {name: m for name, m in layer.named_modules() if isinstance(m, torch.nn.Linear)}
        layer_linear = sum(m.weight.numel() for m in linears.values())
        total = sum(p.numel() for p in model.parameters())
        score = getattr(model, "score", None)
        head = score.weight.numel() if score is not None else 0
        targets = [m for name, m in linears.items() if name.rsplit(".", 1)[-1] in run.model.lora.target_modules]
        heads = model_config.num_attention_heads
        layer_types = getattr(model_config, "layer_types", None) or ()
        norms = sum(1 for m in layer.modules() if "RMSNorm" in type(m).__name__)
        return cls(
            hidden=model_config.hidden_size,
            intermediate=model_config.intermediate_size,
            layers=model_config.num_hidden_layers,
            heads=heads,
            kv_heads=getattr(model_config, "num_key_value_heads", None) or heads,
            head_dim=getattr(model_config, "head_dim", None) or model_config.hidden_size // heads,
            vocab=model_config.vocab_size,
            layer_linear_params=layer_linear,
            other_params=total - layer_linear * len(body.layers) - head,
            head_params=head,
            lora_inputs=tuple(m.in_features for m in targets),
            lora_outputs=tuple(m.out_features for m in targets),
            model_type=model_config.model_type,
            attention_support=supported_attention(type(model)),
            attention_requested=run.model.attn_implementation,
            softcapping=getattr(model_config, "attn_logit_softcapping", None) is not None,
            mask_kinds=tuple(sorted(set(layer_types)))
            or (("sliding_attention",) if getattr(model_config, "sliding_window", None) else ("full_attention",)),
            sliding_window=getattr(model_config, "sliding_window", None),
            norms_per_layer=norms or 2,
        )

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, run: RunConfig) -> ModelShape:
        from transformers import AutoConfig

        return cls.from_config(
            AutoConfig.from_pretrained(checkpoint, trust_remote_code=run.model.trust_remote_code), run
        )

    @classmethod
    def from_dict(cls, shape: dict, run: RunConfig) -> ModelShape:
        """A config.json's fields (KNOWN_SHAPES, or a checkpoint's): model_type picks the config class."""
        from transformers import AutoConfig

        fields = dict(shape)
        return cls.from_config(AutoConfig.for_model(fields.pop("model_type", "llama"), **fields), run)


@dataclass(frozen=True)
class Arithmetic:
    """How a run stores and computes: decides the bytes of every tensor below."""

    device: str  # "cuda" or "cpu"
    compute_bytes: int  # 2 for bf16/fp16, 4 for fp32
    quantization: str  # nf4, fp4, int8 or none

    @property
    def weight_bytes(self) -> int:
        """Unquantized weights load in the compute dtype on CUDA or when quantizing; on a CPU
        without quantization in fp32, with autocast computing in `compute_bytes`."""
        return self.compute_bytes if self.device == "cuda" or self.quantization != "none" else 4

    @property
    def inference_weight_bytes(self) -> int:
        """Inference holds an unquantized model in the compute dtype on a CPU too
        (modeling.inference_precision)."""
        return self.compute_bytes if self.quantization == "none" else self.weight_bytes

    @property
    def packed_weight_bytes(self) -> float:
        if self.quantization in ("nf4", "fp4"):
            return 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit codes, 8-bit absmax per 64, fp32 per 256 of those
        if self.quantization == "int8":
            return 1.0 + 4 / 1024  # int8 codes, an fp32 scale per row (rows are about 4k wide)
        return float(self.weight_bytes)

    @property
    def autocast_copies_weights(self) -> bool:
        """fp32 weights under bf16 autocast (the CPU path): every matmul casts its weight to a
        low-precision copy, which a training step keeps for the backward pass."""
        return self.weight_bytes > self.compute_bytes

    @property
    def dropout_mask_bytes(self) -> int:
        return 1 if self.device == "cuda" else 4  # CUDA's dropout keeps a bool mask, the CPU's one in the input's dtype


def trained_layers(shape: ModelShape, run: RunConfig) -> int:
    return shape.layers - shape.layers // 2 if run.model.lora.layers == "upper_half" else shape.layers


def weights_bytes(shape: ModelShape, arith: Arithmetic, inference: bool = False) -> int:
    held = arith.inference_weight_bytes if inference else arith.weight_bytes
    per_weight = arith.packed_weight_bytes if arith.quantization != "none" else held
    layers = shape.layer_linear_params * shape.layers * per_weight
    return int(layers + shape.other_params * held + shape.head_params * 4)


def adapter_bytes(shape: ModelShape, run: RunConfig, arith: Arithmetic, training: bool) -> int:
    """LoRA matrices and the classification layer in fp32; in training also their gradients and
    the optimizer's two moments (8-bit AdamW: one byte each)."""
    lora = run.model.lora.r * sum(i + o for i, o in zip(shape.lora_inputs, shape.lora_outputs, strict=True))
    params = lora * trained_layers(shape, run) + shape.head_params  # peft keeps the original head beside
    if not training:
        return params * 4
    optimizer = run.train.optimizer
    if optimizer == "auto":
        optimizer = "adamw_8bit" if arith.device == "cuda" else "adamw"
    moments = 2 if optimizer == "adamw_8bit" else 8
    return params * (4 + 4 + moments)


def layer_activation_bytes(shape: ModelShape, run: RunConfig, arith: Arithmetic, rows: int, length: int) -> int:
    """What autograd keeps for the backward pass of one adapted decoder layer over a padded batch."""
    c, h, tokens = arith.compute_bytes, shape.hidden, rows * length
    per_token = shape.norms_per_layer * 4 * h  # every RMSNorm keeps its fp32 upcast input
    for d_in in shape.lora_inputs:
        # lora_A keeps its (autocast) input; dropout its mask; lora_B the rank-r intermediate.
        mask = arith.dropout_mask_bytes if run.model.lora.dropout > 0 else 0
        per_token += (c + mask) * d_in + c * run.model.lora.r
    # SDPA (and flex attention) keeps q, k, v and its output (k and v at their own width: right-padded
    # rows go without a padding mask, heads.decoder_mask) and an fp32 log-sum-exp per head; eager
    # attention keeps q, k and v repeated to every head and the L x L scores (eager_saved_per_score).
    # The gated MLP (SiLU or GELU) keeps gate, up and act(gate).
    per_token += 3 * c * shape.intermediate
    scores = 0
    if shape.attention(arith.device) == "eager":
        per_token += 3 * c * shape.heads * shape.head_dim
        scores = rows * shape.heads * length * length * eager_saved_per_score(shape, c)
    else:
        per_token += c * _qkvo_width(shape) + 4 * shape.heads
        if shape.mask_bytes("sdpa", rows, length, c):
            # A windowed layer's boolean mask becomes an additive one per row, which SDPA keeps.
            scores = rows * length * length * c
    copies = 0
    if arith.autocast_copies_weights:
        copies = shape.layer_linear_params * c
    return tokens * per_token + scores + copies


def eager_saved_per_score(shape: ModelShape, c: int) -> int:
    """Bytes per head and query-key pair that eager attention keeps for the backward pass: the fp32
    softmax and its copy back in the compute dtype (one tensor when that is fp32), and with
    soft-capping the tanh's output."""
    return 4 + (c if c != 4 else 0) + (c if shape.softcapping else 0)


def eager_working_per_score(shape: ModelShape, arith: Arithmetic) -> int:
    """Bytes per score that eager attention adds at its peak to what it saves: the masked scores
    before the softmax, in the mask's dtype (the residual stream's, so fp32 under a CPU's autocast),
    and in the backward pass the probabilities' gradient (each step frees the saved tensor it
    consumes as it makes its gradient), whichever is wider (measured: tests/model/test_plan.py)."""
    return max(arith.compute_bytes, arith.weight_bytes)


def _qkvo_width(shape: ModelShape) -> int:
    """q and the attention output at every head's width, k and v at the key-value heads' width."""
    return 2 * shape.heads * shape.head_dim + 2 * shape.kv_heads * shape.head_dim


def top_activation_bytes(shape: ModelShape, run: RunConfig, rows: int, length: int) -> int:
    """The final norm's fp32 input and the classification layer's fp32 input, every position."""
    return rows * length * 4 * shape.hidden * 2


def training_memory(
    shape: ModelShape,
    run: RunConfig,
    arith: Arithmetic,
    checkpointing: bool,
    rows: int | None = None,
    length: int | None = None,
) -> dict[str, int]:
    """Peak bytes allocated in a training step, by part; `peak` is their sum. The batch defaults to
    train.batch_size rows at model.max_length (the longest length bucket)."""
    rows = rows or run.train.batch_size
    length = length or run.model.max_length
    c, h = arith.compute_bytes, shape.hidden
    layer = layer_activation_bytes(shape, run, arith, rows, length)
    trained = trained_layers(shape, run)
    top = top_activation_bytes(shape, run, rows, length)
    # The backward pass's own working set: gradients of the MLP's three wide tensors, a residual;
    # eager attention's score gradients; the decoder's masks, alive through the step.
    working = rows * length * (2 * c * shape.intermediate + 4 * h)
    attention = shape.attention(arith.device)
    if attention == "eager":
        working += rows * shape.heads * length * length * eager_working_per_score(shape, arith)
    working += shape.mask_bytes(attention, rows, length, arith.weight_bytes)
    if checkpointing:
        # Each adapted layer keeps only its input; backward recomputes one layer at a time.
        saved = trained * rows * length * arith.weight_bytes * h + top
        working += layer
    else:
        # The first adapted layer's input needs no gradient (nothing below it trains), so its LoRA
        # dropouts keep no mask.
        dropout = arith.dropout_mask_bytes if run.model.lora.dropout > 0 else 0
        unmasked = rows * length * sum(shape.lora_inputs) * dropout
        saved = trained * layer - min(trained, 1) * unmasked + top
    parts = {
        "weights": weights_bytes(shape, arith),
        "adapter_and_optimizer": adapter_bytes(shape, run, arith, training=True),
        "saved_activations": saved,
        "working": working,
    }
    return parts | {"peak": sum(parts.values())}


def inference_memory(
    shape: ModelShape, run: RunConfig, arith: Arithmetic, tokens_per_batch: int | None = None, length: int | None = None
) -> dict[str, int]:
    """Peak bytes allocated while predicting one batch (no gradients, no key-value cache)."""
    length = length or run.model.max_length
    tokens_per_batch = tokens_per_batch or run.predict.tokens_per_batch
    rows = rows_per_batch(length, tokens_per_batch, run.predict.max_batch_rows)
    tokens = rows * length
    c, h, s = arith.compute_bytes, shape.hidden, arith.inference_weight_bytes
    # Alive throughout: the residual stream and its normed copy. At the MLP's product, besides them:
    # gate or act, up and their product; at attention: q, k, v and the attention output, and on a
    # CPU the queries regrouped by key/value head and the largest slice's scores beside their fp32
    # softmax and its copy back (8 bytes a score at the most; cpu_attention; right-padded rows
    # build no mask). The two stages are not alive at once: the peak is the larger.
    stream = tokens * (3 * s * h + c * h)
    mlp = tokens * 3 * c * shape.intermediate
    attention = tokens * c * _qkvo_width(shape)
    kind = shape.inference_attention(arith.device)
    if kind == "sliced":
        attention += tokens * c * shape.heads * shape.head_dim + 8 * largest_slice(rows, shape.heads, length)
    elif kind == "eager":
        # k and v repeated to every head, and every head's scores at the softmax: its input, its
        # fp32 output and the copy back (8 bytes a score in fp32 and in bf16 alike).
        per_score = c + 4 + (c if c != 4 else 0)
        attention += tokens * c * 2 * shape.heads * shape.head_dim + rows * shape.heads * length * length * per_score
    working = stream + max(mlp, attention) + shape.mask_bytes(kind, rows, length, s)
    if arith.quantization == "int8":
        # LLM.int8 (bitsandbytes' MatMul8bitLt) never dequantizes the weight: it quantizes the input
        # to int8 codes (1 byte a value), multiplies codes into an int32 output (4 bytes a value),
        # dequantizes that into fp16 (its kernel's only output type) and casts it to the compute
        # dtype. The widest moment is the MLP's up projection, where a token holds the activated gate
        # (c bytes an intermediate value), the int8 input (h values of 1 byte) and the int32, fp16 and
        # cast outputs (4 + 2 + c bytes an intermediate value); `mlp` counted 3c: (6 - c) * I + h
        # bytes a token more, 1.9 GiB at 32 x 1024 tokens of Llama-3.1-8B (an H200 measured 1.8 GiB
        # more than the weight-dequantizing term below). With fp16 compute the cast is a no-op: the
        # plan is 2 * I bytes a token high there, on the safe side.
        working += tokens * ((6 - c) * shape.intermediate + shape.hidden)
    elif arith.quantization != "none":
        working += shape.hidden * shape.intermediate * c  # the widest matrix, dequantized for its matmul
    parts = {
        "weights": weights_bytes(shape, arith, inference=True),
        "adapter": adapter_bytes(shape, run, arith, training=False),
        "working": working,
    }
    return parts | {"peak": sum(parts.values())}


def fits(peak: int, memory_bytes: int, device: str = "cuda") -> bool:
    if device != "cuda":
        return peak <= memory_bytes
    return peak * (1 + FRAGMENTATION) + CUDA_CONTEXT_BYTES <= memory_bytes


def training_flops(shape: ModelShape, run: RunConfig, tokens: float, mean_length: float, checkpointing: bool) -> float:
    """Forward over every layer, backward (input gradients) over the adapted ones, and with
    checkpointing their forward once more; 2 FLOPs per weight and token, plus attention."""
    params = shape.layer_linear_params * shape.layers + shape.head_params
    forward = 2 * params * tokens + 4 * shape.layers * shape.heads * shape.head_dim * mean_length * tokens
    upper = trained_layers(shape, run) / shape.layers
    return forward * (1 + upper * (2 if checkpointing else 1))


def inference_flops(shape: ModelShape, tokens: float, mean_length: float) -> float:
    params = shape.layer_linear_params * shape.layers + shape.head_params
    return 2 * params * tokens + 4 * shape.layers * shape.heads * shape.head_dim * mean_length * tokens


@dataclass(frozen=True)
class Workload:
    """The rows one fold trains on and predicts, and their mean real length in tokens."""

    train_rows: int
    predict_rows: int
    mean_tokens: float

    @classmethod
    def competition(
        cls, run: RunConfig, n_folds: int, rows: int = 57_477, test_rows: int = 25_000, mean_tokens: float = 650.0
    ) -> Workload:
        """The competition's sizes; 650 real tokens a row is the train set's mean at max_length 1024-2048."""
        train = rows * (n_folds - 1) // n_folds * (2 if run.train.swap_augmentation else 1) * run.train.epochs
        tta = 2 if run.predict.swap_tta else 1
        return cls(train, (rows // n_folds + test_rows) * tta, min(mean_tokens, run.model.max_length))


def fold_hours(
    shape: ModelShape,
    run: RunConfig,
    work: Workload,
    checkpointing: bool,
    tflops: float,
    train_efficiency: float = TRAIN_EFFICIENCY,
    predict_efficiency: float = PREDICT_EFFICIENCY,
) -> dict[str, float]:
    """Hours of one fold's training and prediction at `tflops` dense peak times the efficiencies."""
    train_tokens = work.train_rows * work.mean_tokens / TRAIN_PADDING_EFFICIENCY
    predict_tokens = work.predict_rows * work.mean_tokens / PREDICT_PADDING_EFFICIENCY
    train = training_flops(shape, run, train_tokens, work.mean_tokens, checkpointing)
    predict = inference_flops(shape, predict_tokens, work.mean_tokens)
    return {
        "train_hours": train / (tflops * 1e12 * train_efficiency) / 3600,
        "predict_hours": predict / (tflops * 1e12 * predict_efficiency) / 3600,
    }


def settings_that_fit(
    shape: ModelShape, run: RunConfig, arith: Arithmetic, memory_bytes: int, checkpointing: bool
) -> dict | None:
    """The smallest change of the training settings whose plan fits: checkpointing first (it
    changes the time, not the result), then smaller micro-batches (accumulation raised to keep the
    rows per step), then shorter rows. None when even one row of 512 tokens does not fit."""
    batch, accum = run.train.batch_size, run.train.grad_accum
    lengths = [run.model.max_length] + [n for n in (2048, 1536, 1024, 768, 512) if n < run.model.max_length]
    for length in lengths:
        rows = batch
        while rows >= 1:
            peak = training_memory(shape, run, arith, True, rows, length)["peak"]
            if fits(peak, memory_bytes, arith.device):
                change = {} if checkpointing else {"train.gradient_checkpointing": True}
                if rows != batch:
                    change["train.batch_size"] = rows
                    change["train.grad_accum"] = accum * math.ceil(batch / rows)
                if length != run.model.max_length:
                    change["model.max_length"] = length
                return change | {"peak_gib": round(peak / GIB, 1)}
            rows //= 2
    return None


def tokens_per_batch_that_fit(shape: ModelShape, run: RunConfig, arith: Arithmetic, memory_bytes: int) -> int | None:
    tokens = run.predict.tokens_per_batch
    while tokens >= run.model.max_length:
        if fits(inference_memory(shape, run, arith, tokens)["peak"], memory_bytes, arith.device):
            return tokens
        tokens //= 2
    return None


def arithmetic_for(
    run: RunConfig, device: str, capability: tuple[int, int] | None = None, saved_quantization: str | None = None
) -> Arithmetic:
    """The arithmetic a run would pick on a device, without touching one (see modeling.compute_dtype)."""
    import torch

    from arenapref.model.modeling import PRECISIONS, auto_dtype, resolve_quantization

    quantization = saved_quantization or resolve_quantization(run.model.quantization, torch.device(device))
    if run.train.precision == "auto":
        dtype = auto_dtype(device, quantization, capability)
    else:
        dtype = PRECISIONS[run.train.precision]
    return Arithmetic(device, dtype.itemsize, quantization)


def plan_gpu(
    shape: ModelShape,
    run: RunConfig,
    gpu: GpuClass,
    work: Workload,
    saved_quantization: str | None = None,
    tflops: float | None = None,
) -> dict:
    """One row of the plan: peaks, whether they fit `gpu`, the settings that would, and hours a fold."""
    from arenapref.model.modeling import checkpointing_choice

    arith = arithmetic_for(run, "cuda", gpu.capability, saved_quantization)
    memory = int(gpu.memory_gib * GIB)
    without = training_memory(shape, run, arith, False)["peak"]
    # As the training job decides on a fresh GPU of this class: free is what its CUDA context leaves.
    checkpointing, reason = checkpointing_choice(
        run.train.gradient_checkpointing, "cuda", without, memory - CUDA_CONTEXT_BYTES
    )
    train = training_memory(shape, run, arith, checkpointing)["peak"]
    predict = inference_memory(shape, run, arith)["peak"]
    row = {
        "gpu": gpu.name,
        "memory_gib": gpu.memory_gib,
        "checkpointing": checkpointing,
        "checkpointing_reason": reason,
        "train_peak_gib": round(train / GIB, 1),
        "train_fits": fits(train, memory),
        "train_peak_without_checkpointing_gib": round(without / GIB, 1),
        "predict_peak_gib": round(predict / GIB, 1),
        "predict_fits": fits(predict, memory),
    }
    if not row["train_fits"]:
        row["train_settings_that_fit"] = settings_that_fit(shape, run, arith, memory, checkpointing)
    if not row["predict_fits"]:
        row["predict_tokens_per_batch_that_fits"] = tokens_per_batch_that_fit(shape, run, arith, memory)
    hours = fold_hours(
        shape, run, work, checkpointing, tflops or gpu.dense_tflops, gpu.train_efficiency, gpu.predict_efficiency
    )
    return row | {name: round(value, 2) for name, value in hours.items()}


def describe_change(change: dict | None) -> str:
    if change is None:
        return "nothing fits"
    settings = [
        f"{key}: {str(value).lower() if isinstance(value, bool) else value}"
        for key, value in change.items()
        if key != "peak_gib"
    ]
    return ", ".join(settings) + f" (peak {change['peak_gib']} GiB)"


def plan_table(rows: list[dict]) -> str:
    """The plan as a Markdown table, one row per GPU."""
    lines = [
        "| GPU | gradient checkpointing | training peak GiB (without checkpointing) | fits | inference peak GiB "
        "| fits | hours a fold: train + predict | to fit |",
        "| --- | --- | ---: | --- | ---: | --- | ---: | --- |",
    ]
    for row in rows:
        advice = []
        if not row["train_fits"]:
            advice.append(describe_change(row.get("train_settings_that_fit")))
        if not row["predict_fits"]:
            advice.append(f"predict.tokens_per_batch: {row.get('predict_tokens_per_batch_that_fits')}")
        lines.append(
            f"| {row['gpu']} | {'on' if row['checkpointing'] else 'off'} "
            f"| {row['train_peak_gib']} ({row['train_peak_without_checkpointing_gib']}) "
            f"| {'yes' if row['train_fits'] else 'no'} | {row['predict_peak_gib']} "
            f"| {'yes' if row['predict_fits'] else 'no'} "
            f"| {row['train_hours']:.1f} + {row['predict_hours']:.1f} | {'; '.join(advice) or '-'} |"
        )
    return "\n".join(lines)


def pass_cost(shared_fraction: float, folds: int) -> float:
    """Forward passes that `folds` adapters cost when the share `shared_fraction` of the layers
    (those below the adapters) runs once for all of them: (1 + k) / 2 for the upper half."""
    return shared_fraction + folds * (1 - shared_fraction)


def shared_pass_cost(shape: ModelShape, run: RunConfig, folds: int) -> float:
    return pass_cost(1 - trained_layers(shape, run) / shape.layers, folds)


def competition_mean_tokens(max_length: int) -> float:
    """Real tokens a competition row keeps at `max_length` with a Llama-3 tokenizer: about 600 at
    1024 and 700 at 2048 (longer rows are cut), in between linearly."""
    if max_length <= 1024:
        return min(600.0, float(max_length))
    return 600.0 + 100.0 * min(1.0, (max_length - 1024) / 1024)


def kaggle_hours(
    shape: ModelShape,
    run: RunConfig,
    folds: int,
    swap_tta: bool,
    rows: int = 25_000,
    gpus: int = 2,
    gpu: GpuClass = GPU_CLASSES[16],
    mean_tokens: float | None = None,
) -> float:
    """Hours to predict `rows` test rows with `folds` adapters on `gpus` GPUs of a class (each its shard)."""
    mean_tokens = mean_tokens or competition_mean_tokens(run.model.max_length)
    tokens = rows * (2 if swap_tta else 1) * mean_tokens / PREDICT_PADDING_EFFICIENCY
    flops = inference_flops(shape, tokens, mean_tokens) * shared_pass_cost(shape, run, folds)
    return flops / (gpus * gpu.dense_tflops * 1e12 * gpu.predict_efficiency) / 3600


def kaggle_plan(
    shape: ModelShape,
    run: RunConfig,
    exported_folds: int,
    budget_hours: float = 8.0,
    rows: int = 25_000,
    soup: bool = False,
) -> dict:
    """What --time-budget would choose for the hidden test set on Kaggle's 2 x T4, from the figures
    above (the notebook measures its own throughput and decides again), and the hours of each option.
    The soup rows (every fold as one adapter) cost one fold: its LoRA rank k x r adds under 0.1% to
    an 8B model's pass at r = 4 on q, k and v; with `soup` (the export's default) the choice is among them."""
    tta_choices = (True, False) if run.predict.swap_tta else (False,)
    options = []
    for folds in range(exported_folds, 0, -1):
        for tta in tta_choices:
            options.append(
                {"folds": folds, "swap_tta": tta, "hours": round(kaggle_hours(shape, run, folds, tta, rows), 2)}
            )
    soup_options = [
        {
            "folds": exported_folds,
            "soup": True,
            "swap_tta": tta,
            "hours": round(kaggle_hours(shape, run, 1, tta, rows), 2),
        }
        for tta in tta_choices
    ]
    if exported_folds > 1:
        options += soup_options
    choices = soup_options if soup else [option for option in options if not option.get("soup")]
    chosen = next((option for option in choices if option["hours"] <= budget_hours), None)
    return {
        "rows": rows,
        "gpus": "2 x T4",
        "budget_hours": budget_hours,
        "options": options,
        "chosen": chosen,
        "assumption": f"{T4_PREDICT_EFFICIENCY:.0%} of the T4's {GPU_CLASSES[16].dense_tflops:.0f} TFLOP/s, "
        f"{competition_mean_tokens(run.model.max_length):.0f} real tokens a row",
    }
