"""LightningDataModules per modality (the DataLoader only decodes) and device-side views."""

from zoo.data.audio_text import AudioTextDataModule
from zoo.data.base import DataError, ZooDataModule
from zoo.data.image_files import ImageFilesDataModule
from zoo.data.images import ImageDataModule
from zoo.data.skeleton import SkeletonDataModule
from zoo.data.tabular import TabularDataModule
from zoo.data.views import ImageViewConfig, ImageViews

__all__ = [
    "AudioTextDataModule", "DataError", "ImageDataModule", "ImageFilesDataModule", "ImageViewConfig", "ImageViews", "SkeletonDataModule",
    "TabularDataModule", "ZooDataModule",
]
