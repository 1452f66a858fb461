"""Backbones, the metric network, and loading a pretrained (model-zoo style) checkpoint."""
import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from job.errors import ConfigError  # noqa: E402
from job.model.net import MetricNet, NetSpec, load_backbone  # noqa: E402
from job.model.resnet import BACKBONES, create_backbone  # noqa: E402


def test_resnet50_is_the_reference_backbone():
    net = create_backbone("resnet50")
    x = ms.Tensor(np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32))
    assert net(x).shape == (1, 2048)
    names = [p.name for p in net.get_parameters()]
    # model-zoo parameter names, so its ImageNet checkpoints load
    assert {"conv1.weight", "bn1.gamma", "layer1.0.conv2.weight",
            "layer1.0.down_sample_layer.0.weight", "layer4.2.bn3.gamma"} <= set(names)
    assert sum(p.size for p in net.trainable_params()) == pytest.approx(23.5e6, rel=0.01)
    # the last BatchNorm of every block starts at zero: blocks start as the identity
    last_bn = [p for p in net.get_parameters() if p.name.endswith("bn3.gamma")]
    assert len(last_bn) == 16 and all(not p.asnumpy().any() for p in last_bn)


@pytest.mark.parametrize("name", sorted(set(BACKBONES) - {"resnet50"}))  # resnet50: above
def test_every_backbone_gives_its_feature_dim(name):
    net = create_backbone(name)
    x = ms.Tensor(np.zeros((2, 3, 32, 32), np.float32))
    assert net(x).shape == (2, BACKBONES[name].feature_dim)


def test_same_seed_same_weights_other_seed_not():
    a, b, c = (MetricNet(NetSpec("resnet-mini", 16, 5, 32), seed=s) for s in (3, 3, 4))
    wa, wb, wc = ({p.name: p.asnumpy() for p in n.get_parameters()} for n in (a, b, c))
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert not np.array_equal(wa["backbone.conv1.weight"], wc["backbone.conv1.weight"])


def test_embedding_and_head():
    net = MetricNet(NetSpec("resnet-mini", embedding_dim=24, num_classes=7, image_size=32))
    x = ms.Tensor(np.ones((3, 3, 32, 32), np.float32))
    assert net(x).shape == (3, 24) and net.logits(x).shape == (3, 7)


def test_model_zoo_checkpoint_reports_missing_and_unexpected(caplog):
    donor = create_backbone("resnet-mini", seed=11)
    params = {p.name: p for p in donor.get_parameters()}          # bare names, as the model zoo
    params.pop("layer4.0.bn2.gamma")
    params["end_point.weight"] = ms.Parameter(ms.Tensor(np.zeros((10, 128), np.float32)),
                                              name="end_point.weight")
    net = MetricNet(NetSpec("resnet-mini"), seed=0)
    caplog.set_level("INFO", logger="job.model")
    missing, unexpected = load_backbone(net, params, source="zoo.ckpt")
    assert missing == ["backbone.layer4.0.bn2.gamma"] and unexpected == ["end_point.weight"]
    assert "1 missing, 1 unexpected" in caplog.text
    got = net.backbone.conv1.weight.asnumpy()
    assert np.array_equal(got, donor.conv1.weight.asnumpy())


def test_wrong_backbone_checkpoint_is_refused():
    donor = MetricNet(NetSpec("resnet18"))
    params = {p.name: p for p in donor.get_parameters()}
    with pytest.raises(ConfigError, match="wrong shape"):
        load_backbone(MetricNet(NetSpec("resnet-mini")), params, source="r18.ckpt")
