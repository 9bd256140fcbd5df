"""The run configuration: schema defaults and the round trip through the config shape."""

from arenapref.config import RunConfig


def test_run_config_round_trips_through_the_config_shape():
    run = RunConfig.from_config({"model": {"max_length": 300, "lora": {"r": 8}}, "predict": {"precision": "fp32"}})
    again = RunConfig.from_config(run.as_config())
    assert again == run and again.model.lora_r == 8 and again.predict.precision == "fp32"
