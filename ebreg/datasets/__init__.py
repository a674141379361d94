"""Datasets with known conditional densities, procedural images, and loaders for reference data."""

from .images import ImageData, bar_orientations, cell_counts
from .toy import Toy1, Toy2, ToyData, load_toy1_reference, load_toy2_reference
from .uci import UCIDataset, UCISplit, load_uci, uci_datasets

__all__ = ["Toy1", "Toy2", "ToyData", "load_toy1_reference", "load_toy2_reference",
           "UCIDataset", "UCISplit", "load_uci", "uci_datasets", "ImageData", "cell_counts", "bar_orientations"]
