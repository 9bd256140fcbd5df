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
