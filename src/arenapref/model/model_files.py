"""What a local model checkpoint folder must hold before anything loads it.

Standard library only: the workflow checks a configured checkpoint while it is built
(rules/common.smk), where Snakemake may run without this package's dependencies, and every job that
loads a model checks it first, before transformers would fail deep inside a tokenizer or loader.
"""

from __future__ import annotations

import json
from pathlib import Path

from arenapref.errors import CheckpointError

WEIGHTS_INDEX = "model.safetensors.index.json"
# Any one of these lets transformers build the tokenizer: tokenizers' own file, a sentencepiece or
# tiktoken model, or a BPE/WordPiece vocabulary.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")
EXPECTED = "config.json, *.safetensors weights and tokenizer files"


def _safetensors_problem(file: Path) -> str | None:
    """Why a .safetensors file cannot be complete (cut short while downloading or copying), or None.
    Reads only the header: its length, then the JSON that gives each tensor's byte range."""
    size = file.stat().st_size
    try:
        with open(file, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            if size < 8 or 8 + header_size > size:
                return f"{file.name} is cut short ({size} bytes)"
            header = json.loads(handle.read(header_size))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except (OSError, ValueError, TypeError, KeyError, IndexError):
        return f"{file.name} is not a readable safetensors file"
    if 8 + header_size + end > size:
        return f"{file.name} is cut short ({size} of {8 + header_size + end} bytes)"
    return None


def _weights_problem(path: Path) -> str | None:
    index = path / WEIGHTS_INDEX
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return f"{WEIGHTS_INDEX} is not a readable weights index"
        missing = [name for name in shards if not (path / name).is_file()]
        if missing:
            return f"{len(missing)} of {len(shards)} weight files in {WEIGHTS_INDEX} are missing, e.g. {missing[0]}"
        files = [path / name for name in shards]
    else:
        files = sorted(path.glob("*.safetensors"))
    if not files:
        if any(path.glob("*.bin")):
            return "has PyTorch .bin weights only: convert them to safetensors (pickled .bin files are not loaded)"
        return "has no *.safetensors weights"
    for file in files:
        problem = _safetensors_problem(file)
        if problem:
            return problem
    return None


def _tokenizer_problem(where: Path) -> str | None:
    found = [where / name for name in TOKENIZER_FILES if (where / name).is_file()] + sorted(where.glob("*.tiktoken"))
    if not found:
        return f"no tokenizer files in {where} (one of {', '.join(TOKENIZER_FILES)} or *.tiktoken)"
    if all(file.stat().st_size == 0 for file in found):
        return f"the tokenizer files in {where} are empty ({', '.join(file.name for file in found)})"
    return None


def checkpoint_problem(path: str | Path, tokenizer: str | Path | bool = True) -> str | None:
    """One line on why `path` is not a usable checkpoint folder, or None when it is.

    `tokenizer`: True checks the tokenizer files in the checkpoint, a folder checks them there (an
    export ships its own), False skips them (the caller loads the weights only)."""
    path = Path(path)
    if not path.exists():
        return (
            f"model checkpoint not found: {path} does not exist. Set model.checkpoint to a local Hugging Face "
            "checkpoint folder, or leave it null to use the embedded default (prepare_model rule)"
        )
    if not path.is_dir():
        return f"model checkpoint {path} is not a folder (expected {EXPECTED})"
    if not any(path.iterdir()):
        return f"model checkpoint {path} is an empty folder (expected {EXPECTED})"
    config = path / "config.json"
    if not config.is_file():
        return f"model checkpoint {path} has no config.json: not a Hugging Face checkpoint folder (expected {EXPECTED})"
    try:
        if not isinstance(json.loads(config.read_text()), dict):
            raise ValueError
    except (OSError, ValueError):
        return f"model checkpoint {path}: config.json is not a JSON object"
    problem = _weights_problem(path)
    if problem:
        return f"model checkpoint {path}: {problem}"
    if tokenizer is not False:
        problem = _tokenizer_problem(path if tokenizer is True else Path(tokenizer))
        if problem:
            return f"model checkpoint {path}: {problem}"
    return None


def check_checkpoint_files(path: str | Path, tokenizer: str | Path | bool = True) -> Path:
    """`path` when it is a usable checkpoint folder; else CheckpointError saying what is missing."""
    problem = checkpoint_problem(path, tokenizer)
    if problem:
        raise CheckpointError(problem)
    return Path(path)
