"""Backbones by name: timm image models, and (later) tabular, skeleton, audio and text encoders."""

from zoo.encoders.image import ImageEncoder, ImageEncoderConfig
from zoo.encoders.vit import ViTEncoder, ViTEncoderConfig

__all__ = ["ImageEncoder", "ImageEncoderConfig", "ViTEncoder", "ViTEncoderConfig"]
