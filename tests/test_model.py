import pytest
import torch

from cxrsr.models import Discriminator, Generator, GeneratorConfig, count_parameters
from cxrsr.weights import load_state_dict


def test_generator_parameter_count_matches_upstream():
    assert count_parameters(Generator()) == 201_209


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_generator_output_shape_and_range(scale):
    g = Generator(GeneratorConfig(scale=scale)).eval()
    with torch.no_grad():
        y = g(torch.rand(2, 3, 12, 20))
    assert y.shape == (2, 3, 12 * scale, 20 * scale)
    assert y.min() >= 0 and y.max() <= 1
    assert len(g.upsampler) == {2: 1, 4: 2, 8: 3}[scale]


@pytest.mark.parametrize("scale", [0, 1, 3, 6])
def test_config_rejects_non_power_of_two_scales(scale):
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(scale=scale)


def test_config_is_read_back_from_state_dict():
    cfg = GeneratorConfig(scale=8, channels=32, blocks=5)
    assert GeneratorConfig.from_state_dict(Generator(cfg).state_dict()) == cfg


def test_discriminator_shapes_and_parameters():
    d = Discriminator()
    out = d(torch.rand(3, 3, 96, 96))
    assert out.shape == (3, 1)
    # first block has no BatchNorm, the other seven have one
    assert isinstance(d.blocks[0].bn, torch.nn.Identity)
    assert all(isinstance(b.bn, torch.nn.BatchNorm2d) for b in d.blocks[1:])
    assert [b.cnn.depthwise.stride[0] for b in d.blocks] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert d.classifier[2].in_features == 512 * 36 and d.classifier[2].out_features == 1024


def test_upstream_checkpoint_loads_strictly(upstream_weights):
    state, _ = load_state_dict(upstream_weights)
    g = Generator(GeneratorConfig.from_state_dict(state))
    result = g.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert g.config == GeneratorConfig()
