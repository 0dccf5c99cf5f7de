"""Images and data sets: decoding, the built-in digits, CIFAR-10, image folders, and deterministic
loaders (`datasets`); array transforms (`transforms`)."""

from .datasets import (
    IMAGE_EXTENSIONS,
    DataBundle,
    DataError,
    FileImages,
    FileLoader,
    MemoryImages,
    MemoryLoader,
    held_out_split,
    load_cifar10_batches,
    load_data,
    load_digits,
    make_loader,
    open_image,
    preprocess_image,
    scan_image_folder,
    to_rgb,
)

__all__ = [
    "DataBundle", "DataError", "FileImages", "FileLoader", "IMAGE_EXTENSIONS", "MemoryImages", "MemoryLoader",
    "held_out_split", "load_cifar10_batches", "load_data", "load_digits", "make_loader", "open_image",
    "preprocess_image", "scan_image_folder", "to_rgb",
]
