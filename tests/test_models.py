"""The CIFAR model zoo (mbt.models): sizes pinned to kuangliu/pytorch-cifar, shapes, gradients."""

from __future__ import annotations

import pytest
import torch

from mbt.models import MODEL_INPUTS, MODEL_NAMES, MODELS, build_model

# Trainable parameters, measured by instantiating kuangliu/pytorch-cifar's own definitions (our
# models also match them tensor by tensor); ResNet18 at 10 classes is the quoted 11,173,962.
PARAM_COUNTS = {
    ("resnet18", 10): 11_173_962,
    ("resnet18", 100): 11_220_132,
    ("preact_resnet18", 10): 11_171_146,
    ("preact_resnet18", 100): 11_217_316,
    ("mobilenetv2", 10): 2_296_922,
    ("mobilenetv2", 100): 2_412_212,
    ("senet18", 10): 11_260_354,
    ("senet18", 100): 11_306_524,
    ("densenet121", 10): 6_956_298,
    ("densenet121", 100): 7_048_548,
    # Ours, for plumbing tests (not a paper model).
    ("tiny", 10): 1_586,
    ("tiny", 100): 3_116,
}
# First calls per conv shape are slow on a CPU (oneDNN builds a kernel for each):
# DenseNet121 alone takes ~20 s here. The fast suite checks ResNet18 and tiny; the
# integration tier (make test-integration, .ci/run) the other paper models.
_FAST = ("resnet18", "tiny")


def _tiered(name: str, *values):
    marks = () if name in _FAST else (pytest.mark.integration,)
    return pytest.param(name, *values, marks=marks, id="-".join(map(str, (name, *values))))


CASES = [_tiered(*c) for c in sorted(PARAM_COUNTS, key=lambda c: (MODEL_NAMES.index(c[0]), c[1]))]
# The CIFAR-shaped models (fmnist_cnn and char_transformer: tests/test_ood_data.py).
RGB_MODELS = [name for name in MODEL_NAMES if MODEL_INPUTS[name] == "rgb32"]
MODELS_TIERED = [_tiered(name) for name in RGB_MODELS]


@pytest.fixture(autouse=True)
def _two_threads():
    # Keep timings comparable with a 2-core CI box, whatever the host has.
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_registry_names():
    assert MODEL_NAMES == ("resnet18", "preact_resnet18", "mobilenetv2", "senet18", "densenet121",
                           "tiny", "fmnist_cnn", "char_transformer")
    assert tuple(MODELS) == MODEL_NAMES


@pytest.mark.parametrize(("name", "num_classes"), CASES)
def test_model(name, num_classes):
    torch.manual_seed(0)
    model = build_model(name, num_classes)
    assert n_params(model) == PARAM_COUNTS[name, num_classes]

    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()

    # Train mode (batch statistics) and a backward pass: every parameter gets a gradient.
    model.train()
    loss = torch.nn.functional.cross_entropy(
        model(torch.randn(2, 3, 32, 32)), torch.tensor([0, num_classes - 1])
    )
    loss.backward()
    missing = [k for k, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS_TIERED)
def test_other_input_size(name):
    # Global pooling is adaptive, so inputs other than 32x32 work too (40x40 ends on 5x5 maps,
    # which kuangliu's fixed avg_pool(4) would crop). Small size: first calls per shape are slow.
    model = build_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 40, 40)).shape == (1, 10)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_deterministic_under_seed(name):
    torch.manual_seed(123)
    a = build_model(name).state_dict()
    torch.manual_seed(123)
    b = build_model(name).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(124)
    c = build_model(name).state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="unknown model 'resnet50'") as err:
        build_model("resnet50")
    for name in MODEL_NAMES:
        assert name in str(err.value)


@pytest.mark.parametrize("num_classes", [1, 0, -3, True, 10.0])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet18", num_classes)


def _gammas(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([m.weight.detach().flatten() for m in model.modules()
                      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)])


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n != "char_transformer"])
def test_bn_init_legacy_draws_gamma_uniform_and_keeps_other_weights(name):
    torch.manual_seed(3)
    fresh = build_model(name)
    torch.manual_seed(3)
    legacy = build_model(name, bn_init="legacy", seed=3)
    g_torch, g_legacy = _gammas(fresh), _gammas(legacy)
    assert torch.equal(g_torch, torch.ones_like(g_torch))  # PyTorch >= 1.2
    # U(0, 1): inside the interval, mean 1/2 and variance 1/12 (within sampling error).
    n = g_legacy.numel()
    assert 0.0 <= g_legacy.min() and g_legacy.max() < 1.0
    assert abs(g_legacy.mean().item() - 0.5) < 4 * (1 / 12 / n) ** 0.5
    if n > 1000:
        assert abs(g_legacy.var().item() - 1 / 12) < 0.01
    biases = torch.cat([m.bias.detach().flatten() for m in legacy.modules()
                        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)])
    assert torch.equal(biases, torch.zeros_like(biases))
    # Everything that is not a BatchNorm gamma is the torch-init model's, weight for weight.
    bn_weights = {id(m.weight) for m in legacy.modules()
                  if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    for p_fresh, p_legacy in zip(fresh.parameters(), legacy.parameters()):
        if id(p_legacy) not in bn_weights:
            assert torch.equal(p_fresh, p_legacy)


def test_bn_init_legacy_depends_on_seed_only():
    a = _gammas(build_model("tiny", bn_init="legacy", seed=1))
    b = _gammas(build_model("tiny", bn_init="legacy", seed=1))
    c = _gammas(build_model("tiny", bn_init="legacy", seed=2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bn_init_unknown_is_refused():
    with pytest.raises(ValueError, match="bn_init"):
        build_model("tiny", bn_init="kaiming")
