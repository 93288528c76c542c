"""Datasets and batched loading (the public names; each lives in its own module).

datasets.py  the datasets by name, in memory (IDX, CIFAR pickles) or on disk (image folders)
batches.py   the global-batch order and the in-memory loader with batched augmentation
augment.py   crops, flips, PCA lighting, normalisation
idx.py, cifar.py, folder.py   the file formats
"""

from .augment import Normalize
from .batches import GlobalBatches, InMemoryLoader
from .datasets import DATASETS, Dataset, Split, load_dataset

__all__ = ["DATASETS", "Dataset", "GlobalBatches", "InMemoryLoader", "Normalize", "Split", "load_dataset"]
