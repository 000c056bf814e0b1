"""torch.hub entry points: one per shipped checkpoint in checkpoints/, and ``zoo_model`` for any zoo folder or repo.

    model = torch.hub.load("<owner>/<repo>", "simclr_fashion_mnist")              # from GitHub
    model = torch.hub.load("path/to/clone", "simclr_fashion_mnist", source="local")
    model = torch.hub.load("path/to/clone", "zoo_model", "org/name", source="local")  # any zoo folder or Hub repo
    features = model.embed(images)

Each entry returns what ``zoo.from_pretrained`` returns for that folder (the method in eval mode, safetensors weights
only). The entries are made from the folders themselves, so every checkpoint shipped in checkpoints/ has one, named
after its folder with ``-`` → ``_``.
"""

from __future__ import annotations

# underscored, so torch.hub.list shows only the entries
from pathlib import Path as _Path
from typing import Any as _Any
from typing import Callable as _Callable

# import names torch.hub checks before loading (what `zoo.from_pretrained` imports for every method)
dependencies = [
    "torch", "torchvision", "lightning", "timm", "torch_geometric", "torchmetrics", "safetensors", "huggingface_hub",
    "numpy", "scipy", "pandas",
]  # fmt: skip

_CHECKPOINTS = _Path(__file__).resolve().parent / "checkpoints"


def zoo_model(name_or_path: str, **kwargs: _Any) -> _Any:
    """Any zoo model: a folder with config.json + model.safetensors, or a Hugging Face Hub repo id (``org/name``).
    Keyword arguments go to ``zoo.from_pretrained`` (``revision``, ``map_location``, ...)."""
    import zoo

    return zoo.from_pretrained(name_or_path, **kwargs)


def _entry(folder: _Path) -> _Callable[..., _Any]:
    def load(**kwargs: _Any) -> _Any:
        return zoo_model(str(folder), **kwargs)

    load.__name__ = load.__qualname__ = folder.name.replace("-", "_")
    load.__doc__ = (
        f"The shipped zoo checkpoint checkpoints/{folder.name} (its card: checkpoints/{folder.name}/README.md), as "
        "zoo.from_pretrained loads it; ``model.embed(inputs)`` gives the representation."
    )
    return load


for _folder in sorted(_CHECKPOINTS.glob("*/config.json")):
    globals()[_folder.parent.name.replace("-", "_")] = _entry(_folder.parent)
