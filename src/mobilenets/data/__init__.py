"""Images and data sets: finding, decoding and preparing image files, and top-k prediction on them
(`images`); the built-in digits, CIFAR-10, image folders, and deterministic loaders (`datasets`);
array transforms (`transforms`)."""

from .datasets import (
    DataBundle,
    FileImages,
    FileLoader,
    MemoryImages,
    MemoryLoader,
    held_out_split,
    load_cifar10_batches,
    load_data,
    load_digits,
    make_loader,
)
from .images import (
    IMAGE_EXTENSIONS,
    DataError,
    ImageFolder,
    Preprocess,
    list_images,
    open_image,
    predict_top_k,
    preprocess_image,
    scan_image_folder,
    to_rgb,
)

__all__ = [
    "DataBundle",
    "DataError",
    "FileImages",
    "FileLoader",
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "MemoryImages",
    "MemoryLoader",
    "Preprocess",
    "held_out_split",
    "list_images",
    "load_cifar10_batches",
    "load_data",
    "load_digits",
    "make_loader",
    "open_image",
    "predict_top_k",
    "preprocess_image",
    "scan_image_folder",
    "to_rgb",
]
