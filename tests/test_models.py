"""Every registered model is tested here for free (timm's test_model_forward idea)."""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.cnn import CNN
from lightning_modules.registry import MODELS, create_model, model_spec
from lightning_modules.sequence_cnn import MaskedBatchNorm1d
from lightning_modules.system import Classifier

SEQUENCE_MODELS = sorted(name for name, spec in MODELS.items() if spec.kind == "sequence")


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
    known = "cnn, fcn, gru, inception, lstm, resnet, rnn"
    with pytest.raises(KeyError, match=f"unknown model 'transformer'; known: {known}"):
        create_model("transformer", (1, 8, 8), 10)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8), (3, 64, 48), (1, 28, 28), (4, 17, 9)])
@pytest.mark.parametrize("kernel_size", [2, 3, 5])
def test_cnn_adapts_to_input_size_and_channels(shape, kernel_size):
    model = CNN(shape, num_classes=3, channels=(8, 16), kernel_size=kernel_size).eval()
    assert model(torch.randn(2, *shape)).shape == (2, 3)


def test_cnn_too_small_for_its_pooling_is_an_error():
    with pytest.raises(ValueError, match="too small for 4 pooling stages"):
        CNN((1, 8, 8), num_classes=3, channels=(4, 4, 4, 4))


def _garbage_padded(lengths: list[int], steps: int, channels: int = 3):
    """A batch whose steps past each series' end hold garbage that must never be read."""
    lengths = torch.tensor(lengths)
    batch = torch.randn(len(lengths), steps, channels)
    for i, n in enumerate(lengths):
        batch[i, n:] = 1e3
    return batch, lengths


# Every sequence model with its defaults, plus variants that exercise other code paths: even
# kernels (FCN's own 8 among them), no bottleneck, a depth that is no multiple of 3.
PADDING_CASES = (
    [(name, {}) for name in SEQUENCE_MODELS]
    + [
        (cell, {"num_layers": 2, "bidirectional": bidirectional, "pooling": pooling})
        for cell in ("rnn", "lstm", "gru")
        for bidirectional in (False, True)
        for pooling in ("last", "mean")
    ]
    # The recurrent models' convolutional front-end: convolution and shortening (windows of
    # 3 steps over the 11: partial last windows), shortening alone, convolution alone.
    + [
        (cell, {"frontend": 6, "frontend_kernel": kernel, "max_steps": 4, "pooling": pooling})
        for cell in ("lstm", "gru")
        for kernel in (3, 8)
        for pooling in ("last", "mean")
    ]
    + [
        ("gru", {"max_steps": 5, "bidirectional": True}),
        ("lstm", {"frontend": 5, "frontend_kernel": 4}),
    ]
    + [
        ("fcn", {"channels": (8, 16, 8), "kernel_sizes": (4, 6, 2)}),
        # Equal widths: batch-norm-only shortcuts; one convolution a block: none activated.
        ("resnet", {"channels": (6, 6), "kernel_sizes": (4, 7)}),
        ("resnet", {"channels": (5, 8), "kernel_sizes": (3,)}),
        ("inception", {"depth": 4, "filters": 4, "kernel_size": 12, "bottleneck": 0}),
        ("inception", {"depth": 3, "filters": 4, "kernel_size": 8, "residual": False}),
    ]
)


def _case_id(value: str | dict) -> str:
    if isinstance(value, str):
        return value
    return ",".join(f"{k}={v}".replace(" ", "") for k, v in value.items()) or "defaults"


@pytest.mark.parametrize(("name", "kwargs"), PADDING_CASES, ids=_case_id)
def test_padding_never_changes_a_prediction(name, kwargs):
    torch.manual_seed(0)
    model = create_model(name, (11, 3), num_classes=4, **kwargs)
    with torch.no_grad():  # running statistics other than batch norm's initial 0 and 1
        model.train()(*_garbage_padded([11, 5, 8, 2], 11))
    model.eval()
    batch, lengths = _garbage_padded([4, 11, 1, 7], 11)
    with torch.no_grad():
        together = model(batch, lengths)
        alone = torch.cat(
            [model(batch[i : i + 1, :n], lengths[i : i + 1]) for i, n in enumerate(lengths)]
        )
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_padding_length_never_changes_training(name):
    """In training mode too: the same series padded further give the same outputs and the same
    running statistics (batch norm counts valid steps only)."""
    torch.manual_seed(0)
    short = create_model(name, (11, 3), num_classes=4).train()
    long = create_model(name, (11, 3), num_classes=4).train()
    long.load_state_dict(short.state_dict())
    batch, lengths = _garbage_padded([4, 9, 1, 7], 9)
    padded = torch.cat([batch, torch.full((4, 8, 3), 1e3)], dim=1)
    torch.testing.assert_close(short(batch, lengths), long(padded, lengths))
    for (key, a), b in zip(short.state_dict().items(), long.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=key)


@pytest.mark.parametrize("name", ["fcn", "inception", "resnet"])
@pytest.mark.parametrize("training", [False, True])
def test_series_shorter_than_the_kernel(name, training):
    torch.manual_seed(0)
    model = create_model(name, (3, 2), num_classes=3).train(training)  # kernels 8 and 39
    batch, lengths = _garbage_padded([3, 1, 2], 3, channels=2)
    out = model(batch, lengths)
    assert out.shape == (3, 3) and torch.isfinite(out).all()
    assert torch.isfinite(model(batch[1:2, :1], lengths[1:2])).all()  # one step alone


def test_masked_batch_norm_ignores_padded_steps():
    torch.manual_seed(0)
    lengths = [6, 2, 4]
    x = torch.randn(3, 4, 6)
    mask = (torch.arange(6) < torch.tensor(lengths)[:, None])[:, None, :]
    x = x.masked_fill(~mask, 1e3)
    masked, plain = MaskedBatchNorm1d(4).train(), nn.BatchNorm1d(4).train()
    # nn.BatchNorm1d over the valid steps alone, laid end to end: the statistics to match.
    valid = torch.cat([x[i, :, :n] for i, n in enumerate(lengths)], dim=1)[None]
    out, expected = masked(x, mask), plain(valid)
    got = torch.cat([out[i, :, :n] for i, n in enumerate(lengths)], dim=1)[None]
    torch.testing.assert_close(got, expected)
    assert (out.masked_select(~mask) == 0).all()
    torch.testing.assert_close(masked.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.running_var, plain.running_var)
    masked.eval(), plain.eval()
    got = torch.cat([masked(x, mask)[i, :, :n] for i, n in enumerate(lengths)], dim=1)[None]
    torch.testing.assert_close(got, plain(valid))


SMALL = {
    "fcn": {"channels": (8, 8), "kernel_sizes": (8, 3)},
    "inception": {"depth": 3, "filters": 4, "kernel_size": 8, "bottleneck": 4},
    "resnet": {"channels": (4, 8), "kernel_sizes": (8, 3)},
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_one_epoch_through_the_classifier(name):
    torch.manual_seed(0)
    x, lengths = _garbage_padded([9, 3, 7, 1, 9, 5, 2, 8] * 2, 9, channels=4)
    y = torch.randint(0, 3, (16,))
    system = Classifier(name, (9, 4), num_classes=3, model_kwargs=SMALL[name])
    before = {k: v.clone() for k, v in system.state_dict().items()}
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(TensorDataset(x, lengths, y), batch_size=8)
    trainer.fit(system, loader, loader)
    assert torch.isfinite(trainer.callback_metrics["train_loss"])
    assert torch.isfinite(trainer.callback_metrics["val_loss"])
    assert any(not torch.equal(before[k], v) for k, v in system.state_dict().items())


@pytest.mark.parametrize(
    ("steps", "max_steps", "window"), [(150, 64, 3), (427, 64, 7), (29, 64, 1)]
)
def test_frontend_shortens_long_series_to_max_steps(steps, max_steps, window):
    model = create_model("lstm", (steps, 1), 2, frontend=4, max_steps=max_steps)
    assert model.frontend.window == window
    x, lengths = model.frontend(torch.randn(2, steps, 1), torch.tensor([steps, 10]))
    assert x.shape == (2, -(-steps // window), 4) and x.shape[1] <= max_steps
    assert lengths.tolist() == [-(-steps // window), -(-10 // window)]
    assert model.rnn.input_size == 4


def test_no_frontend_by_default():
    assert create_model("lstm", (500, 2), 3).frontend is None
