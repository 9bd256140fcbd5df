"""Stage 2, model (rules/model.smk: prepare_model).

The base checkpoint and everything about running it: the embedded SmolLM2 converted from its GGUF
file into results/model/, checkpoint checks, loading in 4-bit/8-bit/bf16 with LoRA adapters, the
classifier and SFT heads, the memory planner, token batching, the job's device (a GPU slot of its
own) and precision. Used by every later stage; imports only from data."""
