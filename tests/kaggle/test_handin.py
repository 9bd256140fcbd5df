"""Prediction for the hand-in: several folds on one base model with shared lower layers, a choice
of folds, and shards on several workers merged back; each equal to the plain path."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from arenapref.config import RunConfig

FOLDS = ("fold0", "fold1", "fold2")


def _random_adapters(checkpoint, root, run, names=FOLDS):
    """Adapters with random (non-zero) LoRA and head weights, so that the folds really differ."""
    from arenapref.bench.folds import random_adapters

    return random_adapters(checkpoint, run, names, root)


@pytest.mark.parametrize("head", ["classifier", "sft"])
def test_shared_lower_layers_equal_one_fold_at_a_time(tiny_checkpoint, tiny_tokenizer, tmp_path, head):
    from arenapref.evaluate.multifold import first_adapted_layer, load_fold_adapters, predict_folds
    from arenapref.evaluate.predict import predict_probabilities
    from arenapref.model.heads import make_head
    from arenapref.model.modeling import load_base_model, load_trained_adapter

    run = RunConfig.from_config({"model": {"head": head}})
    adapters = _random_adapters(tiny_checkpoint, tmp_path, run)
    model_head = make_head(head, tiny_tokenizer)
    rng = np.random.default_rng(0)
    pad = tiny_tokenizer.pad_token_id
    ids = [list(rng.integers(5, 300, size=int(n))) for n in rng.integers(5, 60, size=23)]
    cpu = torch.device("cpu")
    one_at_a_time = {}
    for name, path in adapters.items():
        model = load_trained_adapter(load_base_model(tiny_checkpoint, run.model, cpu, torch.float32, pad), path)
        one_at_a_time[name] = predict_probabilities(model, ids, cpu, torch.float32, pad, 256, 8, head=model_head)
    model = load_fold_adapters(load_base_model(tiny_checkpoint, run.model, cpu, torch.float32, pad), adapters)
    split = first_adapted_layer(adapters, model.config.num_hidden_layers)
    assert split == model.config.num_hidden_layers // 2
    shared = predict_folds(model, list(adapters), ids, cpu, torch.float32, pad, 256, 8, model_head, split)
    for name in adapters:
        np.testing.assert_allclose(shared[name], one_at_a_time[name], atol=1e-5)
    assert np.abs(shared["fold0"] - shared["fold1"]).max() > 1e-3  # the folds do differ


@pytest.fixture(scope="module")
def export_folder(tiny_checkpoint, tmp_path_factory):
    from arenapref.kaggle.export import export_for_kaggle

    root = tmp_path_factory.mktemp("export")
    run = RunConfig.from_config(
        {"model": {"max_length": 96}, "predict": {"tokens_per_batch": 512, "precision": "fp32"}, "device": "cpu"}
    )
    adapters = _random_adapters(tiny_checkpoint, root / "folds", run)
    return export_for_kaggle(
        root / "kaggle_export", list(adapters.values()), tiny_checkpoint, run, {}, "someone/arenapref-adapters"
    )


@pytest.fixture(scope="module")
def test_csv(tmp_path_factory):
    from arenapref.data.sample_data import write_sample

    return write_sample(tmp_path_factory.mktemp("sample"), 24, 17, seed=9)["test"]


def _predict(export_folder, test_csv, tiny_checkpoint, tmp_path, **options):
    from arenapref.kaggle.offline_predict import PredictOptions, write_predictions

    out = tmp_path / f"submission-{len(list(tmp_path.iterdir()))}.csv"
    write_predictions(export_folder, test_csv, tiny_checkpoint, out, PredictOptions(**options))
    return pl.read_csv(out).sort("id")


def test_shards_on_two_workers_merge_to_the_one_process_result(export_folder, test_csv, tiny_checkpoint, tmp_path):
    one = _predict(export_folder, test_csv, tiny_checkpoint, tmp_path, workers=1)
    two = _predict(export_folder, test_csv, tiny_checkpoint, tmp_path, workers=2)
    assert one["id"].to_list() == two["id"].to_list() and one.height == 17
    np.testing.assert_allclose(two.drop("id").to_numpy(), one.drop("id").to_numpy(), atol=1e-5)
    # In bf16 the rows batched beside a row shift its result (padding, reduction order): measured, bounded.
    one = _predict(export_folder, test_csv, tiny_checkpoint, tmp_path, workers=1, precision="bf16")
    two = _predict(export_folder, test_csv, tiny_checkpoint, tmp_path, workers=2, precision="bf16")
    spread = np.abs(two.drop("id").to_numpy() - one.drop("id").to_numpy()).max()
    print(f"bf16 shard-vs-one-process spread: {spread:.2e}")
    assert spread < 5e-3


def test_chosen_folds_are_the_ones_averaged(export_folder, test_csv, tiny_checkpoint, tmp_path):
    from arenapref.errors import ConfigError
    from arenapref.kaggle.offline_predict import PredictOptions, parse_folds, predict_export

    assert parse_folds("0,2") == ("fold0", "fold2") and parse_folds("all") is None
    each = {
        name: predict_export(export_folder, test_csv, tiny_checkpoint, PredictOptions(folds=(name,)))[1]
        for name in ("fold0", "fold2")
    }
    both = predict_export(export_folder, test_csv, tiny_checkpoint, PredictOptions(folds=("fold0", "fold2")))
    assert both[2]["folds"] == ["fold0", "fold2"]
    expected = (each["fold0"] + each["fold2"]) / 2
    np.testing.assert_allclose(both[1], expected / expected.sum(axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(ConfigError, match="fold7 not in the export"):
        predict_export(export_folder, test_csv, tiny_checkpoint, PredictOptions(folds=("fold7",)))


def test_swap_tta_and_max_length_options_change_the_run(export_folder, test_csv, tiny_checkpoint, tmp_path):
    plain = _predict(export_folder, test_csv, tiny_checkpoint, tmp_path)
    tta = _predict(export_folder, test_csv, tiny_checkpoint, tmp_path, swap_tta=True)
    short = _predict(export_folder, test_csv, tiny_checkpoint, tmp_path, max_length=64)
    assert np.abs(tta.drop("id").to_numpy() - plain.drop("id").to_numpy()).max() > 1e-4
    assert np.abs(short.drop("id").to_numpy() - plain.drop("id").to_numpy()).max() > 1e-4


def test_time_budget_drops_tta_then_folds_to_fit(export_folder, test_csv, tiny_checkpoint):
    from arenapref.kaggle.offline_predict import PredictOptions, choose_plan, parse_hours, predict_export

    assert parse_hours("8h") == 8 and parse_hours("90m") == 1.5 and parse_hours("2.5") == 2.5
    cost = lambda folds: 0.5 + 0.5 * folds  # noqa: E731 - the upper half per fold, the lower half once
    folds = ["fold0", "fold1", "fold2"]
    # 1e-3 s per pass-token, 1,000 tokens: all three folds with TTA take 4 s, without 2 s; two folds 1.5 s.
    assert choose_plan(1e-3, 1000, folds, True, cost, 4.0)["swap_tta"] is True
    plan = choose_plan(1e-3, 1000, folds, True, cost, 2.0)
    assert (plan["folds"], plan["swap_tta"]) == (folds, False)
    plan = choose_plan(1e-3, 1000, folds, True, cost, 1.6)
    assert (plan["folds"], plan["swap_tta"]) == (["fold0", "fold1"], False)
    assert choose_plan(1e-3, 1000, folds, False, cost, 2.0, workers=2)["folds"] == folds  # halved by two workers
    assert choose_plan(1e-3, 1000, folds, False, cost, 0.1).get("over_budget")

    roomy = predict_export(
        export_folder, test_csv, tiny_checkpoint, PredictOptions(time_budget_hours=1.0, swap_tta=True)
    )[2]
    assert roomy["folds"] == ["fold0", "fold1", "fold2"] and roomy["swap_tta"] is True
    tight = predict_export(export_folder, test_csv, tiny_checkpoint, PredictOptions(time_budget_hours=1e-9))[2]
    assert tight["folds"] == ["fold0"] and tight["plan"]["over_budget"]


@pytest.mark.slow
def test_export_installs_offline_and_predicts_the_real_test_rows(tmp_path, tiny_checkpoint, real_data):
    """The hand-in as the notebook runs it: the export's wheels into an interpreter that has only
    torch, no index reachable, then the export's own predict.py on Kaggle's 3-row test.csv."""
    import json
    import subprocess

    from test_wheels import PY, _run, kaggle_like_venv, wheel_cache

    from arenapref.kaggle.export import export_for_kaggle
    from arenapref.kaggle.wheels import install_command

    cache = wheel_cache()
    run = RunConfig.from_config({"model": {"max_length": 96}, "device": "cpu"})
    adapters = _random_adapters(tiny_checkpoint, tmp_path / "folds", run, names=("fold0", "fold1"))
    export = export_for_kaggle(
        tmp_path / "kaggle_export",
        list(adapters.values()),
        tiny_checkpoint,
        run,
        {},
        "someone/arenapref-adapters",
        wheels_python=PY,
        wheel_index_args=["--no-index", "--find-links", str(cache)],
    )
    manifest = json.loads((export / "export.json").read_text())
    assert manifest["wheels"]["count"] > 20 and manifest["kaggle_plan"]["chosen"]["folds"] >= 1
    python = kaggle_like_venv(tmp_path)
    _run(install_command(str(export / "wheels"), python=python))
    out = tmp_path / "working" / "submission.csv"
    out.parent.mkdir()
    done = subprocess.run(
        [
            python,
            str(export / "predict.py"),
            "--base-model",
            str(tiny_checkpoint),
            "--test",
            str(real_data / "test.csv"),
            "--out",
            str(out),
            "--time-budget",
            "1h",
        ],
        capture_output=True,
        text=True,
        cwd=out.parent,
        timeout=900,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PIP_CONFIG_FILE": "/dev/null", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    submission = pl.read_csv(out)
    assert submission.height == 3
    np.testing.assert_allclose(submission.drop("id").to_numpy().sum(axis=1), 1, atol=1e-6)
    assert "plan: fold0, fold1" in done.stderr


def test_workers_get_the_gpus_the_main_process_does_not_hold(tmp_path, monkeypatch):
    """Two GPUs: the main process predicts on the one it claimed, the worker gets the other."""
    import subprocess

    from arenapref.kaggle.offline_predict import PredictOptions, _start_worker

    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda command, env: started.append(env["CUDA_VISIBLE_DEVICES"]))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")
    options = PredictOptions(folds=("fold0",))
    for taken in (0, 1):
        _start_worker(tmp_path, tmp_path / "test.csv", tmp_path, options, 1, 2, 2, tmp_path / "s.npz", taken)
    assert started == ["7", "4"]


def test_soup_option_predicts_as_the_pipelines_soup(export_folder, test_csv, tiny_checkpoint, tmp_path):
    """predict.py --soup builds the soup from the exported adapters; the pipeline builds it from
    results/folds and predicts with predict_fold's path (merged into the base): the same numbers."""
    from arenapref.data.preprocess import preprocess_test
    from arenapref.evaluate.job import predict_fold
    from arenapref.evaluate.soup import make_soup
    from arenapref.kaggle.offline_predict import PredictOptions, predict_export, read_manifest

    folds = export_folder.parent / "folds"
    make_soup([folds / name / "adapter" for name in FOLDS], tmp_path / "soup" / "adapter")
    test, _ = preprocess_test(test_csv)
    test.write_parquet(tmp_path / "test.parquet")
    run = RunConfig.from_config(read_manifest(export_folder)["settings"])
    summary = predict_fold(
        tmp_path / "test.parquet",
        tmp_path / "test.parquet",
        None,
        tiny_checkpoint,
        tmp_path / "soup" / "adapter",
        run,
        None,
        tmp_path / "soup" / "test.parquet",
    )
    assert "gradient_checkpointing" not in summary and summary["device"] == "cpu"  # training's setting only
    pipeline = pl.read_parquet(tmp_path / "soup" / "test.parquet")

    ids, probs, done = predict_export(export_folder, test_csv, tiny_checkpoint, PredictOptions(soup=True))
    assert done["soup"] == list(FOLDS) and done["folds"] == ["soup"]
    assert pipeline["id"].to_list() == ids
    np.testing.assert_allclose(probs, pipeline.select(["winner_model_a", "winner_model_b", "winner_tie"]), atol=1e-5)
    folds_mean = predict_export(export_folder, test_csv, tiny_checkpoint, PredictOptions(soup=False))[1]
    assert np.abs(folds_mean - probs).max() > 1e-4  # the soup is not the mean of the folds' predictions

    one = _predict(export_folder, test_csv, tiny_checkpoint, tmp_path, soup=True, workers=1)
    two = _predict(export_folder, test_csv, tiny_checkpoint, tmp_path, soup=True, workers=2)
    np.testing.assert_allclose(two.drop("id").to_numpy(), one.drop("id").to_numpy(), atol=1e-5)
    fold0_soup = predict_export(export_folder, test_csv, tiny_checkpoint, PredictOptions(soup=True, folds=("fold0",)))
    assert fold0_soup[2]["soup"] == ["fold0"] and np.abs(fold0_soup[1] - probs).max() > 1e-4


def test_an_export_made_for_the_soup_predicts_with_it_by_default(tiny_checkpoint, tmp_path):
    import json

    from arenapref.kaggle.export import export_for_kaggle
    from arenapref.kaggle.offline_predict import PredictOptions

    run = RunConfig.from_config({"model": {"max_length": 96}, "device": "cpu"})
    adapters = _random_adapters(tiny_checkpoint, tmp_path / "folds", run, names=("fold0", "fold1", "full"))
    export = export_for_kaggle(
        tmp_path / "export", list(adapters.values()), tiny_checkpoint, run, {}, "someone/a", soup=True
    )
    manifest = json.loads((export / "export.json").read_text())
    assert manifest["soup"] == {"folds": ["fold0", "fold1"]}  # the full fit stays out
    plan = manifest["kaggle_plan"]
    one_fold = next(o for o in plan["options"] if o["folds"] == 1 and not o.get("soup"))
    assert plan["chosen"]["soup"] is True and plan["chosen"]["hours"] == one_fold["hours"]
    assert PredictOptions().soup_folds(manifest) == ["fold0", "fold1"]
    assert PredictOptions(soup=False).soup_folds(manifest) is None
    assert PredictOptions(folds=("fold1", "full")).soup_folds(manifest) == ["fold1", "full"]
    plain = dict(manifest, soup=None)
    assert PredictOptions().soup_folds(plain) is None and PredictOptions(soup=True).soup_folds(plain) == [
        "fold0",
        "fold1",
    ]
