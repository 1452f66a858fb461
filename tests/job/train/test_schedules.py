import math

import numpy as np
import pytest

from job.errors import ConfigError
from job.train.schedules import lr_schedule


def test_steps_matches_reference_boundaries():
    lr = lr_schedule("steps", total_steps=100, lr_max=0.3)
    assert lr[0] == pytest.approx(0.3) and lr[39] == pytest.approx(0.3)
    assert lr[40] == pytest.approx(0.03) and lr[79] == pytest.approx(0.03)
    assert lr[80] == pytest.approx(0.003) and lr[99] == pytest.approx(0.003)


def test_const():
    assert np.allclose(lr_schedule("const", total_steps=7, lr_max=1e-4), 1e-4)


@pytest.mark.parametrize("mode,formula", [
    ("poly", lambda t: 0.001 + (0.1 - 0.001) * (1 - t) ** 2),
    ("cosine", lambda t: 0.001 + (0.1 - 0.001) * 0.5 * (1 + math.cos(math.pi * t))),
    ("linear", lambda t: 0.1 + (0.001 - 0.1) * t),
], ids=["poly", "cosine", "linear"])
def test_decays_after_warmup(mode, formula):
    lr = lr_schedule(mode, total_steps=50, lr_max=0.1, lr_init=0.0, lr_end=0.001, warmup_steps=10)
    np.testing.assert_allclose(lr[:10], 0.1 * np.arange(1, 11) / 10, rtol=1e-6)
    expected = [formula(i / 40) for i in range(40)]
    np.testing.assert_allclose(lr[10:], expected, rtol=1e-5)


def test_unknown_mode_and_empty():
    with pytest.raises(ConfigError, match="cosine"):
        lr_schedule("exp", total_steps=3, lr_max=1)
    with pytest.raises(ConfigError):
        lr_schedule("const", total_steps=0, lr_max=1)
