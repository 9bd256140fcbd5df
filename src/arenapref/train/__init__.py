"""Stage 3, train (rules/train.smk: train_fold, train_full).

One fold's adapter: its training rows (with swapped copies under swap augmentation), the memory
plan checked before anything loads, chunked training that resumes after an interruption, and
the published adapter with its training log. Reads results/data/train.parquet and the checkpoint;
writes results/folds/fold{k}/adapter/ and train_log.json."""
