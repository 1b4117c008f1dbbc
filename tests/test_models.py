"""Every registered model is tested here for free (timm's test_model_forward idea)."""

import pytest
import torch

from lightning_modules.cnn import CNN
from lightning_modules.registry import MODELS, create_model, model_spec


def _inputs(kind: str, batch: int = 5):
    if kind == "image":
        return (1, 12, 10), (torch.randn(batch, 1, 12, 10),)
    lengths = torch.tensor([9, 3, 7, 1, 9][:batch])
    return (9, 4), (torch.randn(batch, 9, 4), lengths)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_shape_and_finite(name):
    shape, inputs = _inputs(model_spec(name).kind)
    model = create_model(name, shape, num_classes=6).eval()
    out = model(*inputs)
    assert out.shape == (5, 6)
    assert torch.isfinite(out).all()
    out.sum().backward()  # every parameter is reachable from the output
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown model 'transformer'; known: cnn, gru, lstm, rnn"):
        create_model("transformer", (1, 8, 8), 10)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8), (3, 64, 48), (1, 28, 28), (4, 17, 9)])
@pytest.mark.parametrize("kernel_size", [2, 3, 5])
def test_cnn_adapts_to_input_size_and_channels(shape, kernel_size):
    model = CNN(shape, num_classes=3, channels=(8, 16), kernel_size=kernel_size).eval()
    assert model(torch.randn(2, *shape)).shape == (2, 3)


def test_cnn_too_small_for_its_pooling_is_an_error():
    with pytest.raises(ValueError, match="too small for 4 pooling stages"):
        CNN((1, 8, 8), num_classes=3, channels=(4, 4, 4, 4))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_padding_never_changes_a_prediction(cell, bidirectional, pooling):
    torch.manual_seed(0)
    model = create_model(
        cell, (11, 3), num_classes=4, num_layers=2, bidirectional=bidirectional, pooling=pooling
    ).eval()
    lengths = torch.tensor([4, 11, 1, 7])
    batch = torch.randn(4, 11, 3)
    for i, n in enumerate(lengths):
        batch[i, n:] = 1e3  # garbage padding: must never be read
    with torch.no_grad():
        together = model(batch, lengths)
        alone = torch.cat(
            [model(batch[i : i + 1, :n], lengths[i : i + 1]) for i, n in enumerate(lengths)]
        )
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
