"""Registered datasets read from their Hugging Face hub copies (:mod:`pmgaft.data.hub_sources`).

Files come through ``huggingface_hub.snapshot_download`` into the Hugging Face cache (``HF_HUB_CACHE``, by default
``~/.cache/huggingface/hub``): resumable downloads with a progress bar, only the files of the splits asked for, and
offline reads of what is cached (``local_files_only`` unless a download is asked for; ``HF_HUB_OFFLINE=1`` also
keeps a download request off the network). A copy is then indexed (:mod:`pmgaft.data.wds` or
:mod:`pmgaft.data.parquet`), its sample count checked against the known size of the split, its labels mapped
into the registered label order (:mod:`pmgaft.data.classmap`) and served as an :class:`ImageDataset` like any
other, with ``.data_source = "hub:ORG/NAME"`` and ``.hub`` (:class:`HubCopy`) saying what it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pmgaft.data.base import ImageDataset, ImageSource
from pmgaft.data.classmap import map_classes
from pmgaft.data.hub_sources import HUB_SOURCES, PARQUET, WDS, HubSource, HubSplit
from pmgaft.data.scan import MAX_LISTED, CorruptReport
from pmgaft.data.sources import source_id
from pmgaft.data.wds import CLASSNAMES, TEMPLATES
from pmgaft.errors import PmgaftError

if TYPE_CHECKING:
    from pmgaft.prompts.core import ShippedText

_TEXT_FILES = (CLASSNAMES, TEMPLATES)


def hub_source(name: str) -> HubSource:
    """The hub copy of registered dataset ``name``, or a PmgaftError listing the datasets that have one."""
    if name not in HUB_SOURCES:
        raise PmgaftError(f"dataset {name!r} has no Hugging Face hub copy pmgaft can read (hub copies: "
                          f"{', '.join(HUB_SOURCES)}): use --source torchvision")
    return HUB_SOURCES[name]


def cache_dir() -> str:
    """The Hugging Face cache huggingface_hub uses (``HF_HUB_CACHE``, read when huggingface_hub is imported)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _patterns(source: HubSource, splits: list[HubSplit]) -> list[str]:
    from pmgaft.data.parquet import download_patterns

    parts = dict.fromkeys(p for s in splits for p in s.parts)
    if source.format == PARQUET:
        return [pattern for p in parts for pattern in download_patterns(p)]
    return [*_TEXT_FILES, *(f"{p}/*" for p in parts)]


def download_hint(source: HubSource) -> str:
    """How to get the copy into the cache (the clause errors end with)."""
    return (f"download it with `pmgaft datasets --download {source.dataset} --source hub`, or set HF_HUB_CACHE to "
            f"the cache that holds it")


def fetch(source: HubSource, splits: list[HubSplit], *, download: bool = False, force: bool = False) -> Path:
    """The snapshot folder holding ``splits`` of the copy: downloaded (resumably) when ``download``, else only
    looked up in the cache. One PmgaftError sentence for each way it can fail."""
    from huggingface_hub import constants, errors, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    incomplete = getattr(errors, "IncompleteSnapshotError", ())  # newer huggingface_hub: a partial snapshot

    what = f"the hub copy of {source.dataset} ({source.repo})"
    try:
        return Path(snapshot_download(source.repo, repo_type="dataset", allow_patterns=_patterns(source, splits),
                                      local_files_only=not download, force_download=force))
    except RepositoryNotFoundError as err:
        raise PmgaftError(f"the Hugging Face hub has no dataset repository {source.repo!r} that this machine may "
                          f"read (renamed, private or gated; {type(err).__name__}): check the name on "
                          f"huggingface.co, log in with `hf auth login` if it is gated, or use --source "
                          f"torchvision") from err
    except incomplete as err:
        why = " and the hub cannot be reached" if download else ""
        raise PmgaftError(f"{what} is only partly in the Hugging Face cache {cache_dir()}{why} (an interrupted "
                          f"download): run `pmgaft datasets --download {source.dataset} --source hub` online to "
                          f"finish it (it resumes)") from err
    except LocalEntryNotFoundError as err:
        if not download:
            raise PmgaftError(f"{what} is not in the Hugging Face cache {cache_dir()}: "
                              f"{download_hint(source)}") from err
        if constants.HF_HUB_OFFLINE:
            raise PmgaftError(f"{what} cannot be downloaded: HF_HUB_OFFLINE is set and it is not in the Hugging "
                              f"Face cache {cache_dir()}; unset HF_HUB_OFFLINE to download it, or set HF_HUB_CACHE "
                              f"to a cache that holds it") from err
        raise PmgaftError(f"{what} cannot be downloaded (the hub is unreachable: {err.__cause__ or err}) and is not "
                          f"in the Hugging Face cache {cache_dir()}: check the connection and run the same command "
                          f"again") from err
    except (HfHubHTTPError, OSError) as err:
        raise PmgaftError(f"downloading {what} failed ({type(err).__name__}: {err}): run the same command again, "
                          f"the download resumes where it stopped") from err


def cached(source: HubSource, split: HubSplit) -> Path | None:
    """The snapshot folder when the cache holds every file ``split`` needs (no network, no image read), else None."""
    from pmgaft.data.parquet import split_files
    from pmgaft.data.wds import read_nshards

    try:
        folder = fetch(source, [split])
        if source.format == PARQUET:
            return folder if all(split_files(folder, p) for p in split.parts) else None
        if not all((folder / f).is_file() for f in _TEXT_FILES):
            return None
        for part in split.parts:
            n = read_nshards(folder / part)
            if not all((folder / part / f"{i}.tar").is_file() for i in range(n)):
                return None
        return folder
    except PmgaftError:
        return None


# --- reading one split ---------------------------------------------------------------------------------------

@dataclass
class _Read:
    """What a format reader found in a split (raw labels in the copy's numbering)."""

    images: ImageSource
    labels: list[int]
    names: dict[int, str]
    bad_samples: list[str]
    bad_shards: list[str]
    templates: list[str] | None = None


def _read_wds(folder: Path, split: HubSplit) -> _Read:
    from pmgaft.data.wds import TarImages, index_split, read_lines

    names = read_lines(folder / CLASSNAMES)
    images, labels, bad_samples, bad_shards = TarImages([], []), [], [], []
    for part in split.parts:  # read one after the other, as one split
        index = index_split(folder / part, len(names))
        base = len(images.shards)
        images.shards += index.images.shards
        images.entries += [(shard + base, *rest) for shard, *rest in index.images.entries]
        labels += index.labels
        bad_samples += index.bad_samples
        bad_shards += index.bad_shards
    return _Read(images, labels, dict(enumerate(names)), bad_samples, bad_shards, read_lines(folder / TEMPLATES))


def _read_parquet(folder: Path, split: HubSplit) -> _Read:
    from pmgaft.data.parquet import index_parquet, split_files

    files = [f for part in split.parts for f in split_files(folder, part)]
    if not files:
        raise PmgaftError(f"no parquet file of split {'/'.join(split.parts)} under {folder}: the download is "
                          f"incomplete")
    index = index_parquet(files)
    unnamed = sorted(set(index.labels) - set(index.names))
    if unnamed:
        raise PmgaftError(f"labels {unnamed[:5]} of {folder} have no class name (no ClassLabel names and no "
                          f"'text' column naming them): the copy's classes cannot be matched to pmgaft's")
    return _Read(index.images, index.labels, index.names, [], index.bad_files)


READERS: dict[str, Callable[[Path, HubSplit], _Read]] = {WDS: _read_wds, PARQUET: _read_parquet}


@dataclass
class HubCopy:
    """What a hub-backed dataset is: repository, commit, which split, how labels were matched, what was lost."""

    repo: str
    revision: str
    split: str
    class_order: str
    lost: CorruptReport
    text: "ShippedText | None" = None  # CLIP_benchmark's classnames.txt (in label order) and templates

    def to_dict(self) -> dict[str, Any]:
        """For result cards: ``{"repo", "revision", "split", "class_order", "lost"}``."""
        return {"repo": self.repo, "revision": self.revision, "split": self.split,
                "class_order": self.class_order, "lost": self.lost.n_skipped}


def _candidates(source: HubSource) -> dict[str, list[str]]:
    """pmgaft's class lists for the dataset, each in the registered label order."""
    from pmgaft.prompts import curated_classnames, get_prompts

    out = {"pmgaft's curated class names": curated_classnames(source.dataset),
           "the reference codes' class names": get_prompts(source.dataset, "paper").classnames}
    if source.class_ids is not None:
        out["the registered class ids"] = source.class_ids()
    return out


def _check_count(read: _Read, split: HubSplit, what: str, skip_corrupt: bool, name: str) -> CorruptReport:
    """Compare what was read with the split's size; the unreadable samples as a report (``skip_corrupt``)."""
    seen = len(read.labels) + len(read.bad_samples)
    if seen > split.size:
        raise PmgaftError(f"{what} holds {seen:,} samples where {split.description} has {split.size:,}: it is not "
                          f"the set pmgaft knows (a changed revision?); use --source torchvision")
    lost = split.size - seen
    problems = read.bad_shards + read.bad_samples
    if lost and not read.bad_shards:
        problems.append(f"{lost:,} sample(s) missing: the copy holds {seen:,} of {split.size:,}")
    n_bad = len(read.bad_samples) + lost
    if problems and not skip_corrupt:
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise PmgaftError(f"{what}: {n_bad:,} sample(s) cannot be read:\n  " + "\n  ".join(problems[:MAX_LISTED])
                          + more + f"\nDownload it again with `pmgaft datasets --download {name} --source hub "
                          f"--force-download`, or skip them with --skip-corrupt (counted and listed in the result "
                          f"card).")
    return CorruptReport(n_skipped=n_bad, skipped=problems[:MAX_LISTED])


def load_hub(name: str, split: str = "test", *, download: bool = False, skip_corrupt: bool = False,
             benchmark_split: bool = False, force_download: bool = False) -> ImageDataset:
    """Registered dataset ``name``'s ``split`` from its hub copy (see the module docstring).

    ``benchmark_split``: for ``"test"``, CLIP_benchmark's own test split where no registered split holds the same
    images (VTAB EuroSAT and Caltech-101, SUN397's whole set). ``skip_corrupt``: unreadable samples are left out
    and listed in ``.hub.lost`` instead of failing.
    """
    source, chosen = _split_of(name, split, benchmark_split)
    folder = fetch(source, [chosen], download=download, force=force_download)
    ds = read_split(source, chosen, folder, skip_corrupt=skip_corrupt)
    ds.split = split
    return ds


def hub_revision(name: str, split: str = "test", *, download: bool = False, benchmark_split: bool = False) -> str:
    """The commit of the hub copy of ``name`` that holds ``split`` (fetched first when ``download``): what
    :func:`load_hub` then reads from the cache, without reading it."""
    source, chosen = _split_of(name, split, benchmark_split)
    return fetch(source, [chosen], download=download).name


def _split_of(name: str, split: str, benchmark_split: bool) -> tuple[HubSource, HubSplit]:
    source = hub_source(name)
    chosen = source.split_for(split, benchmark_split)
    if chosen is None:
        benchmark = " (CLIP_benchmark's own split: pass benchmark_split=True)" if source.split_for(split, True) else ""
        raise PmgaftError(f"the hub copy of {name} ({source.repo}) holds no images of pmgaft's {split!r} split: it "
                          f"holds {source.holds()}{benchmark}; use --source torchvision")
    return source, chosen


def read_split(source: HubSource, chosen: HubSplit, folder: Path, *, skip_corrupt: bool = False) -> ImageDataset:
    """``chosen`` of the copy in snapshot ``folder``: indexed, counted, labels in the registered order."""
    from pmgaft.prompts.core import ShippedText

    name = source.dataset
    what = f"the hub copy of {name} ({source.repo}, {'/'.join(chosen.parts)})"
    read = READERS[source.format](folder, chosen)
    lost = _check_count(read, chosen, what, skip_corrupt, name)
    if source.own_classes:  # the copy's own label space, its own numbering made dense
        order = sorted(read.names)
        labels = {label: i for i, label in enumerate(order)}
        note = f"the copy's own {len(order)} classes (not pmgaft's {name} classes)"
    else:
        cmap = map_classes(read.names, _candidates(source), what)
        labels, note = cmap.labels, cmap.note
    by_label = {target: read.names[label] for label, target in labels.items()}
    classes = [by_label[i] for i in range(len(by_label))]
    text = None if read.templates is None else ShippedText(
        classes, read.templates, f"the hub copy's classnames.txt and zeroshot_classification_templates.txt "
                                 f"({source.repo}@{folder.name[:10]})")
    ds = ImageDataset(read.images, [labels[t] for t in read.labels], classes, name=name, location=folder)
    ds.hub = HubCopy(source.repo, folder.name, f"{chosen.description} ({chosen.size:,} images)", note, lost, text)
    ds.data_source = source_id(name, "hub")
    return ds
