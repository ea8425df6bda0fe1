"""Training data: the set, a seeded validation split carved from it, and a resumable per-step batch plan.

The data order is a pure function of (seed, epoch): step ``s`` of the run reads positions
``perm(epoch)[pos * B : (pos + 1) * B]`` with ``epoch, pos = divmod(s, steps_per_epoch)``; process ``r`` of
``W`` takes its contiguous shard of that global batch (what a ``DistributedSampler`` with a per-epoch seed
gives, but indexable by step) and splits it into ``grad_accum`` micro-batches. Resuming at step ``s`` therefore
replays exactly the batches an uninterrupted run would have read, under any number of processes (the global
batch of a step does not depend on it). Incomplete last batches are dropped. Every micro-batch carries the
dataset positions of its images, which key their train-time attack's random starts.
(With ``augment`` the random crops come from the loader workers' RNG and are not replayed bit-exactly.)
"""
from __future__ import annotations

import signal
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from pmgaft.data import DATASETS, ImageDataset, load_dataset, make_transform, stratified_subset
from pmgaft.errors import PmgaftError
from pmgaft.prompts import Prompts, get_prompts
from pmgaft.training.config import TrainConfig, relabel_refused


TRAIN_IMAGE_SIZE = 224  # the input side the training transforms are built for (the model resizes inside)


@dataclass
class TrainData:
    train: ImageDataset
    val: ImageDataset | None
    classes: list[str]  # class keys in label order: ImageNet wnids where the loader has them, else names


def load_train_data(config: TrainConfig) -> TrainData:
    """The training split of ``config.dataset`` minus a stratified, seeded validation split."""
    preset = "train_augment" if config.augment else config.transform
    full = load_dataset(config.dataset, config.data_root, split="train", transform=preset,
                        image_size=TRAIN_IMAGE_SIZE)
    if len(set(full.targets)) < 2:
        raise PmgaftError(f"training set {config.dataset!r} under {config.data_root} has images of "
                          f"{len(set(full.targets))} class; zero-shot fine-tuning needs at least 2 classes.")
    n_val = config.val_size if config.val_size is not None else int(round(config.val_fraction * len(full)))
    if n_val >= len(full):
        raise PmgaftError(f"val_size {n_val} leaves no training images ({len(full)} in {config.dataset!r}).")
    val_idx = set(stratified_subset(full, n_val, seed=config.seed)) if n_val else set()
    train = full.select([i for i in range(len(full)) if i not in val_idx], "train")
    val = full.select(sorted(val_idx), "val") if val_idx else None
    if val is not None and config.augment:  # validation images are never augmented
        val.transform = _eval_transform(config)
    if config.batch_size > len(train):
        raise PmgaftError(f"batch_size {config.batch_size} is larger than the training split ({len(train)} images "
                          f"of {config.dataset!r} after holding out {len(val_idx)} for validation); lower "
                          f"--batch-size or --val-size.")
    return TrainData(train, val, list(getattr(full, "wnids", None) or full.classes))


def train_prompts(config: TrainConfig, classes: Sequence[str] | None) -> Prompts:
    """The prompts of the training classes (``classes``: the loader's class keys, None when not listed).

    A subset of a registered set (other classes) is named from its own class keys (ImageNet wnids by the style's
    ImageNet names), with a warning. A style whose names merge or drop classes of the data (an evaluation
    protocol's label map, e.g. ``ttc``'s 999-class ImageNet on a folder of ImageNet wnids) is refused: training
    scores every image with the data's own labels.
    """
    try:
        prompts = get_prompts(config.dataset, config.prompt_style, classnames=classes)
    except PmgaftError as err:
        if classes is None:
            raise
        warnings.warn(f"{err} Naming the classes from the data (ImageNet wnids by the style's ImageNet names).",
                      stacklevel=3)
        prompts = get_prompts(f"folder:{config.dataset}", config.prompt_style, classnames=classes)
    if prompts.label_map is not None:
        raise relabel_refused(config)
    return prompts


def _eval_transform(config: TrainConfig) -> Any:
    return make_transform(DATASETS.get(config.dataset), config.transform, TRAIN_IMAGE_SIZE)


@dataclass(frozen=True)
class BatchPlan:
    """Which dataset positions every (step, process, micro-batch) reads."""

    n: int
    batch_size: int
    seed: int
    world: int = 1
    rank: int = 0
    grad_accum: int = 1

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    @property
    def local_batch(self) -> int:
        return self.batch_size // self.world

    def permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def micro_batches(self, step: int) -> list[list[int]]:
        epoch, pos = divmod(step, self.steps_per_epoch)
        batch = self.permutation(epoch)[pos * self.batch_size:(pos + 1) * self.batch_size]
        local = batch[self.rank * self.local_batch:(self.rank + 1) * self.local_batch].tolist()
        size = self.local_batch // self.grad_accum
        return [local[i * size:(i + 1) * size] for i in range(self.grad_accum)]


class PlanSampler:
    """A batch sampler yielding every micro-batch of steps ``start .. end - 1`` in order."""

    def __init__(self, plan: BatchPlan, start: int, end: int) -> None:
        self.plan, self.start, self.end = plan, start, end

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.end):
            yield from self.plan.micro_batches(step)

    def __len__(self) -> int:
        return (self.end - self.start) * self.plan.grad_accum


class WithPositions(Dataset):
    """``dataset`` whose items are ``(image, label, position)``: the loader batches the positions as well."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        x, y = self.dataset[index]
        return x, y, index


def ignore_stop_signals(worker_id: int) -> None:
    """Loader workers leave SIGINT/SIGTERM to the main process, which stops at a step boundary (a worker that
    died on the terminal's Ctrl-C would break the step in progress); they exit when it does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


MicroBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images [m, 3, H, W], labels [m], positions [m]


def plan_steps(dataset: Dataset, plan: BatchPlan, start: int, end: int, num_workers: int
               ) -> Iterator[tuple[int, list[MicroBatch]]]:
    """``(step, micro-batches)`` for the optimizer steps ``start + 1 .. end`` (step s reads batch s - 1)."""
    loader = DataLoader(WithPositions(dataset), batch_sampler=PlanSampler(plan, start, end),
                        num_workers=num_workers, persistent_workers=False, pin_memory=torch.cuda.is_available(),
                        worker_init_fn=ignore_stop_signals if num_workers else None)
    micro: list[MicroBatch] = []
    step = start
    for batch in loader:
        micro.append(tuple(batch))
        if len(micro) == plan.grad_accum:
            step += 1
            yield step, micro
            micro = []


def resolve_grad_accum(config: TrainConfig, world: int) -> int:
    """Micro-batches per step per process, so that ``batch_size = world x grad_accum x micro-batch``."""
    if config.batch_size % world:
        raise PmgaftError(f"batch_size {config.batch_size} is not divisible by the {world} processes.")
    local = config.batch_size // world
    accum = config.grad_accum or (-(-local // config.micro_batch) if config.micro_batch else 1)
    if local % accum:
        raise PmgaftError(f"the per-process batch {local} is not divisible into {accum} micro-batches; choose "
                          f"--grad-accum / --micro-batch so that batch_size = processes x grad_accum x micro-batch.")
    return accum
