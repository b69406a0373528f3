"""Training from a plan on disk, in this process or data parallel over N processes.

A plan is a folder the build writes before training: ``plan.json`` (the pieces, the gene
order, the model settings, the seed, the fingerprint), ``studies.npy`` and ``labels.npy`` (one
code per cell), optionally ``relation.npy`` (the triplet pairing over the label codes) and
``panels.npy`` (studies x genes, measured) with ``panel_shares.npy`` (each study's input share). Every process reads it the same way and memory-maps
the cells, so ``run_plan`` is the same call for one process and for each of N ranks; the
checkpoint (``checkpoint.pt``) lives in the plan folder, so a rerun resumes from it.

``train_distributed`` spawns N processes on this machine (``torch.distributed``, gloo on CPU,
NCCL on GPU), each running its share of every batch; rank 0 writes the result to the plan
folder. (Several machines would run the same ``run_plan`` per rank on a shared file system;
no launcher for that is provided yet.)
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["TrainPlan", "run_plan", "train_distributed", "write_plan"]

_PLAN = "plan.json"
_RESULT = "result"


@dataclass(frozen=True)
class TrainPlan:
    """A plan folder (see the module docstring); ``checkpoint`` and ``result`` live in it."""

    folder: Path

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoint.pt"

    @property
    def result(self) -> Path:
        return self.folder / _RESULT

    def settings(self) -> dict:
        return json.loads((self.folder / _PLAN).read_text())


def write_plan(folder: str | Path, *, pieces: list[str], gene_order: list[str], study_codes: np.ndarray, label_codes: np.ndarray,
               spec, seed: int, fingerprint: str, relation=None, panels: np.ndarray | None = None,
               panel_shares: np.ndarray | None = None, checkpoint_every: int | None = None) -> TrainPlan:
    """Write the plan folder (each file atomically, ``plan.json`` last); returns it. ``spec``:
    a ModelSpec; ``relation``: the (L, L) int8 tensor or array of label_codes_and_relation;
    ``panels``, ``panel_shares``: as compute.model.train_on_corpus takes them."""
    from compute.files import save_npy_atomic, write_json_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_npy_atomic(folder / "studies.npy", np.asarray(study_codes, dtype=np.int32))
    save_npy_atomic(folder / "labels.npy", np.asarray(label_codes, dtype=np.int32))
    for name, arr in (("relation", relation), ("panels", panels), ("panel_shares", panel_shares)):
        if arr is not None:
            save_npy_atomic(folder / f"{name}.npy", np.asarray(arr))
        else:
            (folder / f"{name}.npy").unlink(missing_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(spec).items()}
    write_json_atomic(folder / _PLAN, {"pieces": [str(p) for p in pieces], "gene_order": list(gene_order), "spec": settings,
                                       "seed": int(seed), "fingerprint": fingerprint, "checkpoint_every": checkpoint_every})
    return TrainPlan(folder)


def _spec(settings: dict):
    from compute.manifest import ModelSpec

    s = dict(settings)
    s["hidden_sizes"] = tuple(s["hidden_sizes"])
    s["path"] = Path(s["path"]) if s.get("path") else None
    return ModelSpec(**s)


def run_plan(plan: TrainPlan | str | Path, *, rank: int = 0, world: int = 1, progress: bool = True, stop_after: int | None = None):
    """Train from ``plan`` as rank ``rank`` of ``world`` (the process group initialised by the
    caller when ``world`` > 1), resuming from its checkpoint; returns (encoder, history)."""
    import torch

    from compute.model._stream import CellCorpus
    from compute.model._train import train_on_corpus

    plan = plan if isinstance(plan, TrainPlan) else TrainPlan(Path(plan))
    s = plan.settings()
    corpus = CellCorpus.open(s["pieces"], len(s["gene_order"]))
    studies = np.load(plan.folder / "studies.npy", mmap_mode="r")
    labels = np.load(plan.folder / "labels.npy", mmap_mode="r")
    if studies.shape[0] != corpus.n_cells:
        raise ValueError(f"{plan.folder}: studies.npy has {studies.shape[0]} cells, the pieces {corpus.n_cells}; re-run the build")
    rel_file, panels_file = plan.folder / "relation.npy", plan.folder / "panels.npy"
    relation = torch.as_tensor(np.load(rel_file)) if rel_file.is_file() else None
    panels = np.load(panels_file) if panels_file.is_file() else None
    shares_file = plan.folder / "panel_shares.npy"
    shares = np.load(shares_file) if shares_file.is_file() else None
    return train_on_corpus(corpus, studies, labels, s["gene_order"], _spec(s["spec"]), s["seed"], relation=relation, panels=panels,
                           panel_shares=shares,
                           progress=progress, checkpoint=plan.checkpoint, checkpoint_every=s.get("checkpoint_every"),
                           fingerprint=s["fingerprint"], rank=rank, world=world, stop_after=stop_after)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _backend() -> str:
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def _rank_main(rank: int, world: int, folder: str, address: str, threads: int, progress: bool) -> None:
    """One spawned rank: join the group, train its share, rank 0 writes the result."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(max(1, threads))
    dist.init_process_group(_backend(), init_method=address, rank=rank, world_size=world)
    try:
        encoder, history = run_plan(folder, rank=rank, world=world, progress=progress)
        if rank == 0:
            _write_result(TrainPlan(Path(folder)), encoder, history)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _write_result(plan: TrainPlan, encoder, history: dict) -> None:
    from compute.files import copy_tree_atomic, write_json_atomic
    from compute.model._io import save_encoder

    staging = plan.folder / f".{_RESULT}.{os.getpid()}.saving"
    save_encoder(encoder, staging)
    write_json_atomic(staging / "history.json", history)
    copy_tree_atomic(staging, plan.result)
    import shutil

    shutil.rmtree(staging, ignore_errors=True)


def train_distributed(plan: TrainPlan | str | Path, workers: int, *, threads_per_worker: int = 1, progress: bool = True):
    """Train from ``plan`` on ``workers`` processes of this machine (spawned; gloo on CPU, NCCL
    on GPU); returns (encoder, history) as rank 0 wrote them. A rank that fails stops them all
    and raises here (torch.multiprocessing's ProcessRaisedException, with its traceback)."""
    import shutil

    import torch.multiprocessing as mp

    from compute.model._io import load_encoder

    plan = plan if isinstance(plan, TrainPlan) else TrainPlan(Path(plan))
    shutil.rmtree(plan.result, ignore_errors=True)
    address = f"tcp://127.0.0.1:{_free_port()}"
    mp.start_processes(_rank_main, args=(workers, str(plan.folder), address, threads_per_worker, progress), nprocs=workers,
                       join=True, start_method="spawn")
    encoder = load_encoder(plan.result)
    history = json.loads((plan.result / "history.json").read_text())
    return encoder, history
