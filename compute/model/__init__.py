"""The encoder ("foundation model"): SCimilarity architecture, training, save/load.

Training reads cells a batch at a time (``CellCorpus``: memory-mapped per-study pieces,
``BalancedBatches``: the seeded sampler), checkpoints and resumes, and runs data parallel on
``torch.distributed`` (``train_distributed``).
"""

from compute.model._distributed import TrainPlan, run_plan, train_distributed, write_plan
from compute.model._io import load_encoder, save_encoder
from compute.model._modules import Decoder, Encoder
from compute.model._stream import (
    BalancedBatches,
    CellCorpus,
    PieceWriter,
    piece_blocks,
    piece_info,
    piece_ready,
    piece_rows,
    write_piece,
)
from compute.model._train import (
    TrainingStopped,
    TrainLoss,
    label_codes_and_relation,
    panel_input,
    seed_everything,
    train_encoder,
    train_on_corpus,
    triplet_loss,
)

__all__ = [
    "BalancedBatches",
    "CellCorpus",
    "Decoder",
    "Encoder",
    "TrainLoss",
    "TrainPlan",
    "TrainingStopped",
    "label_codes_and_relation",
    "load_encoder",
    "panel_input",
    "PieceWriter",
    "piece_blocks",
    "piece_info",
    "piece_ready",
    "piece_rows",
    "run_plan",
    "save_encoder",
    "seed_everything",
    "train_distributed",
    "train_encoder",
    "train_on_corpus",
    "triplet_loss",
    "write_piece",
    "write_plan",
]
