"""Stage 5, kaggle (rules/kaggle.smk: download, export_kaggle, submit).

The hand-in: the competition's files fetched with the real `kaggle` CLI, the export (adapters, this
package, offline wheels, predict.py) that a Kaggle notebook runs with the internet off, the
notebook folder, and the submission of the notebook's output. Reads the trained folds and the
evaluation; writes results/kaggle_export/, results/kaggle_kernel/ and the submission receipt."""
