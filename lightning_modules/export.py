"""A trained Classifier as plain files: CPU weights plus the arguments that rebuild it.

`model.pt` holds only tensors (loaded with `weights_only=True`), so a model trained on a GPU
loads on a CPU-only machine and loading runs no pickled code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from lightning_modules.system import Classifier

WEIGHTS, SPEC = "model.pt", "model.json"


def weights_sha256(module: torch.nn.Module) -> str:
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


def load_classifier(folder: Path) -> tuple[Classifier, dict[str, Any]]:
    """The Classifier saved in `folder` (in eval mode, on the CPU) and its spec."""
    spec = json.loads((folder / SPEC).read_text())
    module = Classifier(**spec["hparams"])
    module.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    return module.eval(), spec
