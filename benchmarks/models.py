"""The compared training steps: a zoo method and lightly's composition of the same parts.

Both sides use the same timm backbone (``timm.create_model(name, num_classes=0)``; zoo wraps it in its
``ImageEncoder``, which adds the mean/std normalisation on the device), the same head sizes, the same batch, optimizer
(SGD, momentum 0.9) and precision. A :class:`Contender` exposes one optimisation step on ready-made views, and the
data path of its library: zoo's loader hands out raw uint8 images and makes views on the device; lightly's loader
runs its PIL/torchvision transforms in CPU workers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import timm
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

METHODS = ("simclr", "swav", "byol")


@dataclass
class Setting:
    backbone: str = "resnet18"
    image_size: int = 32
    batch_size: int = 32
    num_prototypes: int = 300
    device: str = "cpu"
    channels_last: bool = False  # both libraries: conv weights and inputs channels-last
    compile: bool | dict = False  # zoo's ``compile`` option (torch.compile of each network, in place)


@dataclass
class Contender:
    """One library's version of one method."""

    library: str
    method: str
    model: nn.Module
    step_fn: Callable[[list[Tensor]], Tensor]  # views -> loss, after backward and the optimizer step
    loader_fn: Callable[[np.ndarray, int], DataLoader]  # (uint8 images [N, H, W, 3], workers) -> loader
    views_fn: Callable[[Any], list[Tensor]]  # a loader batch (on the device) -> views


def example_views(method: str, setting: Setting) -> list[Tensor]:
    """Random views with the shapes each method trains on (2 large + 6 half-size crops for SwAV)."""
    b, s = setting.batch_size, setting.image_size
    shapes = [(b, 3, s, s)] * 2 + ([(b, 3, s // 2, s // 2)] * 6 if method == "swav" else [])
    return [torch.rand(shape, device=setting.device) for shape in shapes]


class _UInt8Images(Dataset):
    """Raw images for zoo: the loader only indexes (and the device makes views)."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tensor:
        return self.images[i]


class _PILTransformed(Dataset):
    """lightly's path: decode to PIL, then its CPU transform makes the views."""

    def __init__(self, images: np.ndarray, transform: Callable) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> list[Tensor]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i]))


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)


def zoo_contender(method: str, setting: Setting) -> Contender:
    from zoo.registry import get_method

    s = setting.image_size
    encoder = {"name": setting.backbone, "in_chans": 3}
    kwargs: dict[str, Any] = {"encoder": encoder, "optimizer": "sgd", "lr": 0.01,
                              "channels_last": setting.channels_last, "compile": setting.compile}
    if method == "simclr":
        kwargs |= {"projector_out_dim": 128}
    elif method == "swav":
        kwargs |= {"small_crop_size": s // 2, "num_prototypes": setting.num_prototypes, "projector_hidden_dim": 2048}
    model = get_method(method)(**kwargs).to(setting.device).train()
    model.apply_speed_options()  # what Lightning's configure_model does in `zoo fit`
    optimizer = _sgd(model)

    def step(views: list[Tensor]) -> Tensor:
        loss = model.ssl_step({"views": views}).loss
        loss.backward()
        model.on_after_backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if hasattr(model, "update_targets"):
            model.update_targets()  # BYOL's EMA, as MomentumMethod.optimizer_step does
        return loss.detach()

    def loader(images: np.ndarray, workers: int) -> DataLoader:
        return DataLoader(_UInt8Images(images), batch_size=setting.batch_size, shuffle=True, drop_last=True,
                          num_workers=workers, persistent_workers=workers > 0)

    return Contender("zoo", method, model, step, loader, lambda batch: model.make_inputs({"image": batch})["views"])


def lightly_contender(method: str, setting: Setting) -> Contender:
    from lightly.loss import NegativeCosineSimilarity, NTXentLoss, SwaVLoss
    from lightly.models.modules import (
        BYOLPredictionHead,
        BYOLProjectionHead,
        SimCLRProjectionHead,
        SwaVProjectionHead,
        SwaVPrototypes,
    )
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import BYOLTransform, SimCLRTransform, SwaVTransform
    from lightly.transforms.byol_transform import BYOLView1Transform, BYOLView2Transform

    s = setting.image_size
    backbone = timm.create_model(setting.backbone, num_classes=0)
    d = backbone.num_features
    modules: dict[str, nn.Module] = {"backbone": backbone}
    if method == "simclr":
        modules["projector"] = SimCLRProjectionHead(d, d, 128)
        criterion: nn.Module = NTXentLoss(temperature=0.5)
        # zoo's SimCLR defaults: CIFAR-strength jitter (s = 0.5), no blur
        transform: Callable = SimCLRTransform(input_size=s, cj_strength=0.5, gaussian_blur=0.0)
    elif method == "swav":
        modules["projector"] = SwaVProjectionHead(d, 2048, 128)
        modules["prototypes"] = SwaVPrototypes(128, setting.num_prototypes)
        criterion = SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)
        transform = SwaVTransform(crop_sizes=(s, s // 2), crop_counts=(2, 6))
    else:
        modules["projector"] = BYOLProjectionHead(d, 4096, 256)
        modules["predictor"] = BYOLPredictionHead(256, 4096, 256)
        modules["target_backbone"] = copy.deepcopy(backbone)
        modules["target_projector"] = copy.deepcopy(modules["projector"])
        deactivate_requires_grad(modules["target_backbone"])
        deactivate_requires_grad(modules["target_projector"])
        criterion = NegativeCosineSimilarity()
        transform = BYOLTransform(BYOLView1Transform(input_size=s), BYOLView2Transform(input_size=s))
    model = nn.ModuleDict(modules).to(setting.device).train()
    if setting.channels_last:  # what a lightly user would write: weights and inputs channels-last
        model = model.to(memory_format=torch.channels_last)
    optimizer = _sgd(model)

    def loss_of(views: list[Tensor]) -> Tensor:
        if setting.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        if method == "simclr":
            n = views[0].shape[0]
            z0, z1 = model["projector"](model["backbone"](torch.cat(views))).split(n)
            return criterion(z0, z1)
        if method == "swav":
            model["prototypes"].normalize()
            n = views[0].shape[0]
            features = [model["backbone"](torch.cat(views[:2])), model["backbone"](torch.cat(views[2:]))]
            z = nn.functional.normalize(model["projector"](torch.cat(features)), dim=1)
            p = list(model["prototypes"](z).split(n))
            return criterion(p[:2], p[2:])
        n = views[0].shape[0]
        both = torch.cat(views)
        p0, p1 = model["predictor"](model["projector"](model["backbone"](both))).split(n)
        with torch.no_grad():
            t0, t1 = model["target_projector"](model["target_backbone"](both)).split(n)
        return 0.5 * (criterion(p0, t1) + criterion(p1, t0))

    def step(views: list[Tensor]) -> Tensor:
        loss = loss_of(views)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if method == "byol":
            update_momentum(model["backbone"], model["target_backbone"], m=0.99)
            update_momentum(model["projector"], model["target_projector"], m=0.99)
        return loss.detach()

    def loader(images: np.ndarray, workers: int) -> DataLoader:
        return DataLoader(_PILTransformed(images, transform), batch_size=setting.batch_size, shuffle=True,
                          drop_last=True, num_workers=workers, persistent_workers=workers > 0)

    return Contender("lightly", method, model, step, loader, lambda batch: list(batch))


def build(library: str, method: str, setting: Setting) -> Contender:
    return (zoo_contender if library == "zoo" else lightly_contender)(method, setting)
