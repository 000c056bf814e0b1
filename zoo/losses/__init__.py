"""Losses: small pure functions with paper-cited defaults, each tested against a manual reference."""

from zoo.losses.nt_xent import NTXentLoss, nt_xent_loss

__all__ = ["NTXentLoss", "nt_xent_loss"]
