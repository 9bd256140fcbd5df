"""Stage 4, evaluate (rules/evaluate.smk: predict_fold, predict_full, features, evaluate,
submission; rules/report.smk: report_figures).

Each fold's adapter predicts its validation rows (out of fold) and the test rows, several folds
can share one pass over the base model, the features model is fitted, the post-processing
(temperature, blend) is chosen out of fold, and the fold ensemble becomes the validated
submission. Writes results/folds/fold{k}/{oof,test}.parquet, results/oof.parquet, metrics.json,
postprocessing.json, submission.csv and the report's figures."""
