import pytest

from job.config import TrainConfig, build_config, parse_set
from job.errors import ConfigError
from job.presets import STAGE_PRESETS, preset, preset_for_stage


def test_reference_presets():
    s, t, q = (STAGE_PRESETS[n] for n in ("softmax", "triplet", "quadruplet"))
    assert (s["batch_size"], s["lr_schedule"], s["lr_max"]) == (80, "steps", 0.3)
    assert (t["batch_size"], t["lr_schedule"], t["lr_max"]) == (60, "const", 1e-4)
    assert (q["batch_size"], q["lr_schedule"], q["lr_max"]) == (60, "const", 1e-4)
    for p in (s, t, q):
        assert (p["momentum"], p["weight_decay"], p["loss_scale"], p["epochs"]) == (0.9, 1e-4, 1024.0, 30)
    assert (s["save_checkpoint_epochs"], s["keep_checkpoint_max"]) == (10, 5)
    assert t["keep_checkpoint_max"] == 1 and q["keep_checkpoint_max"] == 1


def test_yaml_then_set_precedence(tmp_path):
    f = tmp_path / "over.yaml"
    f.write_text("epochs: 3\nlr_max: 0.5\n")
    cfg = build_config(preset("triplet"), yaml_file=f, overrides=["epochs=4", "margin=0.2"])
    assert (cfg.epochs, cfg.lr_max, cfg.margin, cfg.batch_size) == (4, 0.5, 0.2, 60)


@pytest.mark.parametrize("item,message", [
    ("epoch=3", "did you mean epochs"),
    ("epochs", "key=value"),
    ("epochs=three", "epochs must be int"),
    ("lr_schedule=exp", "lr_schedule='exp' is not one of"),
    ("loss=triplett", "loss='triplett' is not one of"),
    ("batch_size=0", "batch_size must be >= 1"),
    ("label_smoothing=1.5", "label_smoothing must be in"),
], ids=["typo", "no-equals", "bad-int", "bad-schedule", "bad-loss", "zero-batch", "smoothing"])
def test_bad_overrides_say_what_is_wrong(item, message):
    with pytest.raises(ConfigError, match=message):
        build_config(preset("softmax"), overrides=[item])


def test_chen_margins_must_be_ordered():
    with pytest.raises(ConfigError, match="margin2 < margin"):
        build_config(preset("quadruplet"), overrides=["margin2=0.2"])


def test_stage_to_preset():
    assert preset_for_stage("pretrain", "triplet") == "softmax"
    assert preset_for_stage("finetune", "quadruplet") == "quadruplet"
    with pytest.raises(ConfigError):
        preset_for_stage("finetune", "softmax")


def test_set_values_are_typed():
    assert parse_set(["lr_max=1e-3", "epochs=2"]) == {"lr_max": 1e-3, "epochs": 2}
    assert TrainConfig().digest() != build_config({}, overrides=["epochs=2"]).digest()
