"""Each loss against an independent NumPy formula (tests/job/losses/reference.py)."""
import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from job.losses import LOSSES, create_loss  # noqa: E402
from tests.job.losses import reference as ref  # noqa: E402


def _pk_batch(rng, p, k, dim):
    labels = np.repeat(rng.choice(1000, size=p, replace=False), k).astype(np.int32)
    return rng.normal(size=(p * k, dim)).astype(np.float32), labels


def _run(loss, x, labels):
    return float(loss(ms.Tensor(x), ms.Tensor(labels)).asnumpy())


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3], ids=["plain", "ls0.1", "ls0.3"])
def test_softmax_matches_numpy(seed, smoothing):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3, size=(12, 7)).astype(np.float32)
    labels = rng.integers(0, 7, size=12).astype(np.int32)
    got = _run(create_loss("softmax", label_smoothing=smoothing), logits, labels)
    assert got == pytest.approx(ref.softmax_ce(logits, labels, smoothing), rel=1e-5)


def test_label_smoothing_changes_the_loss():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=8).astype(np.int32)
    plain = _run(create_loss("softmax"), logits, labels)
    smooth = _run(create_loss("softmax", label_smoothing=0.2), logits, labels)
    assert abs(plain - smooth) > 1e-3


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("margin", [0.1, 0.5])
def test_triplet_fixed_matches_numpy(seed, margin):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(18, 16)).astype(np.float32)
    labels = np.zeros(18, np.int32)
    got = _run(create_loss("triplet-fixed", margin=margin), x, labels)
    assert got == pytest.approx(ref.triplet_fixed(x, margin), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pk", [(4, 2), (3, 4), (6, 3)], ids=["4x2", "3x4", "6x3"])
def test_triplet_batch_hard_matches_numpy(seed, pk):
    rng = np.random.default_rng(seed)
    x, labels = _pk_batch(rng, *pk, dim=8)
    got = _run(create_loss("triplet-batch-hard", margin=0.3), x, labels)
    assert got == pytest.approx(ref.triplet_batch_hard(x, labels, 0.3), rel=1e-5, abs=1e-6)


def test_triplet_batch_hard_ignores_anchors_without_positive():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    labels = np.array([1, 1, 2, 3, 3], np.int32)      # class 2 has no positive
    got = _run(create_loss("triplet-batch-hard", margin=0.2), x, labels)
    assert got == pytest.approx(ref.triplet_batch_hard(x, labels, 0.2), rel=1e-5)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pk", [(4, 2), (3, 3), (5, 2)], ids=["4x2", "3x3", "5x2"])
def test_quadruplet_chen_matches_numpy(seed, pk):
    rng = np.random.default_rng(seed)
    x, labels = _pk_batch(rng, *pk, dim=8)
    got = _run(create_loss("quadruplet-chen", margin=0.4, margin2=0.2), x, labels)
    assert got == pytest.approx(ref.quadruplet_chen(x, labels, 0.4, 0.2), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_quadruplet_batch_hardest_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    x, labels = _pk_batch(rng, 5, 2, dim=8)
    got = _run(create_loss("quadruplet-batch-hardest", margin=0.1), x, labels)
    assert got == pytest.approx(ref.quadruplet_batch_hardest(x, labels, 0.1), rel=1e-5, abs=1e-6)


def test_chen_second_term_is_active():
    """With margin2 large the pair term dominates: Chen differs from batch-hard triplet."""
    rng = np.random.default_rng(3)
    x, labels = _pk_batch(rng, 4, 2, dim=8)
    chen = _run(create_loss("quadruplet-chen", margin=0.1, margin2=0.09), x, labels)
    tri = _run(create_loss("triplet-batch-hard", margin=0.1), x, labels)
    assert chen > tri


def test_triplet_batch_hard_gradient_matches_finite_differences():
    rng = np.random.default_rng(11)
    x, labels = _pk_batch(rng, 3, 2, dim=5)
    x = x.astype(np.float64)
    loss = create_loss("triplet-batch-hard", margin=0.5)
    grad_fn = ms.grad(lambda t: loss(t, ms.Tensor(labels)))
    analytic = grad_fn(ms.Tensor(x.astype(np.float32))).asnumpy()
    eps = 1e-4
    numeric = np.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            up, down = x.copy(), x.copy()
            up[i, j] += eps
            down[i, j] -= eps
            numeric[i, j] = (ref.triplet_batch_hard(up, labels, 0.5)
                             - ref.triplet_batch_hard(down, labels, 0.5)) / (2 * eps)
    assert np.abs(numeric).max() > 1e-3          # the loss is active: gradients are not all 0
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=2e-3)


def test_unknown_loss_lists_valid_names():
    from job.errors import ConfigError
    with pytest.raises(ConfigError, match="triplet-batch-hard"):
        create_loss("triplett")


def test_every_loss_declares_layout():
    for name, cls in LOSSES.items():
        assert cls.layout in ("shuffle", "pk", "triplet-tuples"), name
