"""The run configuration: schema defaults and the round trip through the config shape."""

from arenapref.config import RunConfig


def test_run_config_round_trips_through_the_config_shape():
    run = RunConfig.from_config({"model": {"max_length": 300, "lora": {"r": 8}}, "predict": {"precision": "fp32"}})
    again = RunConfig.from_config(run.as_config())
    assert again == run and again.model.lora.r == 8 and again.predict.precision == "fp32"


def test_settings_dataclasses_have_exactly_the_schemas_keys():
    """The schema is the one source: a key added there without its field (or the reverse) fails here."""
    from dataclasses import fields

    import yaml

    from arenapref.config import SCHEMA_PATH, LoraSettings, ModelSettings, PredictSettings, TrainSettings

    sections = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]
    pairs = [
        (ModelSettings, sections["model"]),
        (LoraSettings, sections["model"]["properties"]["lora"]),
        (TrainSettings, sections["train"]),
        (PredictSettings, sections["predict"]),
    ]
    for cls, schema in pairs:
        assert {f.name for f in fields(cls)} == set(schema["properties"]), cls.__name__


def test_deterministic_is_on_by_default_and_not_part_of_the_training_hash():
    run = RunConfig.from_config({})
    assert run.train.deterministic is True
    off = RunConfig.from_config({"train": {"deterministic": False}})
    # The same computation, with or without deterministic kernels: a fold's resume state stays valid.
    assert off.training_hash() == run.training_hash()


def test_a_config_error_is_one_line_naming_the_key_and_the_file(tmp_path):
    from arenapref.config import config_error_line

    main, extra = tmp_path / "config.yaml", tmp_path / "extra.yaml"
    main.write_text("folds:\n  n: 2\nmodel:\n  bogus: 1\n")
    extra.write_text("train:\n  epochs: x\n")
    config = {"folds": {"n": 2}, "model": {"bogus": 1}, "train": {"epochs": "x"}}
    line = config_error_line(config, [main, extra])
    assert line.startswith(f"invalid configuration in {main}: unknown key model.bogus (model takes checkpoint, ")
    assert line.endswith("(and 1 more)") and "\n" not in line
    assert config_error_line({"train": {"epochs": "x"}}, [main, extra]) == (
        f"invalid configuration in {extra}: train.epochs: 'x' is not of type 'integer'"
    )
    line = config_error_line({"device": "gpu"}, [main], overrides={"device": "gpu"})
    assert line == "invalid configuration in --config: device: 'gpu' is not one of ['auto', 'cpu', 'cuda']"
    assert config_error_line({"folds": {"n": 2}}, [main]) is None
