"""Losses: small pure functions with paper-cited defaults, each tested against a manual reference."""

from zoo.losses.byol import BYOLLoss, byol_loss, symmetric_byol_loss
from zoo.losses.clip import symmetric_info_nce
from zoo.losses.jepa import jepa_loss
from zoo.losses.nt_xent import NTXentLoss, nt_xent_loss
from zoo.losses.slap import slap_loss
from zoo.losses.swav import SwAVLoss, sinkhorn_knopp, swav_loss

__all__ = [
    "BYOLLoss", "NTXentLoss", "SwAVLoss", "byol_loss", "jepa_loss", "nt_xent_loss", "sinkhorn_knopp", "slap_loss",
    "swav_loss", "symmetric_byol_loss", "symmetric_info_nce",
]
