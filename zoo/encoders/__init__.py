"""Backbones by name: timm image models, and (later) tabular, skeleton, audio and text encoders."""

from zoo.encoders.image import ImageEncoder, ImageEncoderConfig

__all__ = ["ImageEncoder", "ImageEncoderConfig"]
