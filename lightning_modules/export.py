"""A trained Classifier as plain files: CPU weights plus the arguments that rebuild it.

`model.pt` holds only tensors (loaded with `weights_only=True`), so a model trained on a GPU
loads on a CPU-only machine and loading runs no pickled code. Loading rebuilds the network
alone (`TrainedNet`), not the LightningModule: evaluating or serving a model imports neither
Lightning nor torchmetrics, which saves seconds in every evaluate process and in every
served model's start-up, and keeps them out of the served model's requirements.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lightning_modules.registry import create_model

if TYPE_CHECKING:
    from lightning_modules.system import Classifier

WEIGHTS, SPEC = "model.pt", "model.json"


class TrainedNet(nn.Module):
    """The inference half of a Classifier: the same `net` (so the same state-dict keys and
    weights digest) and the same forward, without the optimiser, metrics or augmentation."""

    def __init__(
        self,
        model: str,
        input_shape: tuple[int, ...],
        num_classes: int,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.net = create_model(model, tuple(input_shape), num_classes, **(model_kwargs or {}))
        self.sequence = len(input_shape) == 2

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, lengths) if self.sequence else self.net(x)


def weights_sha256(module: nn.Module) -> str:
    """Digest of every tensor of the state dict, by name in sorted order, on the CPU."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode() + b"\0")
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_classifier(module: Classifier, folder: Path, extra: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    torch.save(state, folder / WEIGHTS)
    hparams = {k: v for k, v in module.hparams.items()}
    spec = {"hparams": hparams, **extra}
    (folder / SPEC).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")


def load_classifier(folder: Path) -> tuple[TrainedNet, dict[str, Any]]:
    """The network saved in `folder` (in eval mode, on the CPU) and its spec."""
    spec = json.loads((folder / SPEC).read_text())
    shape = {k: spec["hparams"][k] for k in ("model", "input_shape", "num_classes")}
    module = TrainedNet(**shape, model_kwargs=spec["hparams"].get("model_kwargs"))
    module.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    return module.eval(), spec
