"""LightningDataModules per modality (the DataLoader only decodes; views and masks are drawn on the device, zoo.nn)."""

from zoo.data.audio_text import AudioTextDataModule
from zoo.data.base import DataError, ZooDataModule
from zoo.data.image_files import ImageFilesDataModule
from zoo.data.images import ImageDataModule
from zoo.data.skeleton import SkeletonDataModule
from zoo.data.tabular import TabularDataModule

__all__ = [
    "AudioTextDataModule", "DataError", "ImageDataModule", "ImageFilesDataModule", "SkeletonDataModule",
    "TabularDataModule", "ZooDataModule",
]
