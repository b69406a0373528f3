"""The encoder ("foundation model"): SCimilarity architecture, training, save/load."""

from compute.model._io import load_encoder, save_encoder
from compute.model._modules import Decoder, Encoder
from compute.model._train import (
    TrainLoss,
    label_codes_and_relation,
    seed_everything,
    train_encoder,
    triplet_loss,
)

__all__ = [
    "Decoder",
    "Encoder",
    "TrainLoss",
    "label_codes_and_relation",
    "load_encoder",
    "save_encoder",
    "seed_everything",
    "train_encoder",
    "triplet_loss",
]
