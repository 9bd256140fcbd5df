"""Stage 1, data (rules/data.smk: make_sample_data, preprocess).

Reads Kaggle's train.csv and test.csv (or the generated sample in the same schema), parses each
JSON list of turns with one-line errors for bad rows, builds the model's input text, groups rows
by prompt and assigns folds. Writes results/data/train.parquet, test.parquet and report.json.
Imports nothing from the later stages."""
