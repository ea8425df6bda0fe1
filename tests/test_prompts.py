"""Prompts and class names: every dataset x style builds, sizes match the datasets, facts spot-checked."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

import pmgaft  # noqa: F401  (torchvision shim before open_clip)
from pmgaft.errors import PmgaftError
from pmgaft.prompts import (
    ALIASES,
    DATASETS,
    NAME_FIXES,
    PROMPT_STYLES,
    Prompts,
    clean_classname,
    curated_classnames,
    get_prompts,
    known_datasets,
    resolve_dataset,
)
from pmgaft.prompts._sources import clip_benchmark_classnames, clip_benchmark_templates, data_json
from pmgaft.prompts.paper import imagenet_reference_names

NUM_CLASSES = {
    "cifar10": 10, "cifar100": 100, "stl10": 10, "sun397": 397, "food101": 101, "oxford_pets": 37,
    "flowers102": 102, "dtd": 47, "eurosat": 10, "fgvc_aircraft": 100, "imagenet": 1000,
    "caltech101": 101,  # torchvision drops BACKGROUND_Google
    "caltech256": 257,  # includes 257.clutter
    "stanford_cars": 196, "pcam": 2, "country211": 211, "tinyimagenet": 200, "fashion_mnist": 10, "mnist": 10,
    "digits": 10,
}
VERBATIM = {"eurosat", "pcam"}  # paper style uses the released code's own strings
RELABELLED = {("agft", "caltech101"): 100, ("ttc", "imagenet"): 999}  # styles scoring fewer classes than the data


def test_registry_covers_the_dataset_keys():
    assert set(DATASETS) == set(NUM_CLASSES)
    assert set(ALIASES.values()) <= set(DATASETS)
    assert set(known_datasets()) == set(DATASETS) | set(ALIASES)


@pytest.mark.parametrize("style", list(PROMPT_STYLES))
@pytest.mark.parametrize("dataset", known_datasets())
def test_every_dataset_and_style(dataset, style):
    p = get_prompts(dataset, style)
    assert p.dataset == dataset and p.style == style
    key = resolve_dataset(dataset)
    assert p.num_raw_classes == NUM_CLASSES[key]
    assert p.num_classes == RELABELLED.get((style, key), NUM_CLASSES[key])
    assert (p.label_map is None) == ((style, key) not in RELABELLED) and bool(p.label_note) == (p.label_map is not None)
    assert p.templates and all(t.count("{}") == 1 and "{c}" not in t for t in p.templates)
    assert all(isinstance(c, str) and c and c == c.strip() for c in p.classnames)
    texts = p.texts()
    assert len(texts) == p.num_classes and all(len(row) == len(p.templates) for row in texts)
    assert "{}" not in texts[0][0] and p.classnames[0] in texts[0][0]
    assert json.loads(json.dumps(p.to_dict())) == {"dataset": dataset, "style": style,
                                                   "classnames": p.classnames, "templates": p.templates,
                                                   "names_source": p.names_source,
                                                   **({"label_map": p.label_map, "label_note": p.label_note}
                                                      if p.label_map is not None else {})}
    assert p.names_source and "\n" not in p.names_source
    if style in ("paper", "train"):
        assert not any("_" in c for c in p.classnames)
        if not (style == "paper" and resolve_dataset(dataset) in VERBATIM):
            assert all(c == c.lower() for c in p.classnames)


def test_curated_lists_are_unique():
    for ds in DATASETS:
        names = curated_classnames(ds)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        # OpenAI's ImageNet names map two pairs of synsets to one word (projectile/missile, sunglass/sunglasses)
        assert duplicates == (["missile", "sunglasses"] if ds == "imagenet" else []), ds


# --- spot checks against the installed packages and known facts -------------------------------------------

def test_cifar_stl_facts():
    assert curated_classnames("cifar10")[0] == "airplane" and curated_classnames("cifar10")[9] == "truck"
    assert curated_classnames("cifar100")[1] == "aquarium fish" and curated_classnames("cifar100")[-1] == "worm"
    assert curated_classnames("stl10") == ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey",
                                           "ship", "truck"]


def test_imagenet_from_open_clip_and_consistent_with_clip_benchmark():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    names = curated_classnames("imagenet")
    assert names == list(IMAGENET_CLASSNAMES) == clip_benchmark_classnames("imagenet1k")
    assert names[:2] == ["tench", "goldfish"]
    templates = get_prompts("imagenet", "ensemble").templates
    assert templates == [t("{}") for t in OPENAI_IMAGENET_TEMPLATES] == clip_benchmark_templates("imagenet1k")
    assert len(templates) == 80


def test_tinyimagenet_names_are_open_clip_names_of_its_wnids():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    import timm

    synsets = (Path(timm.__file__).parent / "data" / "_info" / "imagenet_synsets.txt").read_text().split()
    mapping = data_json("classnames")["tinyimagenet"]
    assert len(mapping) == 200 and all(re.fullmatch(r"n\d{8}", w) for w in mapping)
    assert {w: IMAGENET_CLASSNAMES[synsets.index(w)] for w in mapping} == mapping
    assert curated_classnames("tinyimagenet")[0] == "goldfish"  # n01443537, the smallest wnid
    assert get_prompts("tinyimagenet", "ensemble").templates == get_prompts("imagenet", "ensemble").templates


def test_caltech101_drops_clip_benchmarks_background_class():
    cb = clip_benchmark_classnames("caltech101")
    assert len(cb) == 102 and cb[0] == "background"
    assert curated_classnames("caltech101") == cb[1:]
    assert curated_classnames("caltech101")[:2] == ["off-center face", "centered face"]  # Faces, Faces_easy
    # the paper style uses the raw folder names instead (tga-zsr); they are aligned with clip-benchmark's list
    raw = data_json("paper")["datasets"]["caltech101"]["raw_classnames"]
    assert raw == sorted(raw) and len(raw) == 101 and "BACKGROUND_Google" not in raw
    assert [r for r, c in zip(raw, cb[1:]) if r.lower().replace("_", " ") == c.lower()][:3] == ["accordion", "anchor",
                                                                                                 "ant"]


def test_caltech256_ends_with_clutter_and_borrows_caltech101_templates():
    names = curated_classnames("caltech256")
    assert names[0] == "ak47" and names[-1] == "clutter" and "faces easy" in names
    assert get_prompts("caltech256", "ensemble").templates == clip_benchmark_templates("caltech101")
    assert get_prompts("caltech256").templates == ["A photo of a {}."]
    assert get_prompts("caltech256").classnames[:2] == ["ak47", "american flag"]


def test_sorted_label_orders():
    # torchvision sorts DTD folders, Food-101 keys, SUN397's ClassName.txt; variants.txt is sorted too
    for ds in ("dtd", "sun397", "fgvc_aircraft"):
        assert curated_classnames(ds) == sorted(curated_classnames(ds)), ds
    food_raw = [c.replace(" ", "_") for c in curated_classnames("food101")]
    assert food_raw == sorted(food_raw) and food_raw[0] == "apple_pie"


def test_stanford_cars_devkit_order_and_years():
    names = curated_classnames("stanford_cars")
    assert names[0] == "AM General Hummer SUV 2000" and names[173] == "Ram C/V Cargo Van Minivan 2012"
    assert all(re.search(r" (19|20)\d\d$", n) for n in names)
    paper = get_prompts("stanford_cars", "paper").classnames
    assert paper[0] == "am general hummer suv" and paper[173] == "ram c/v cargo van minivan"
    assert not any(re.search(r"\d{4}$", n) for n in paper)
    # the reference cuts the last 5 characters: the same on every name
    assert paper == [n[:-5].lower().replace("-", " ") for n in names]
    assert get_prompts("stanford_cars", "ensemble").classnames[0] == "AM General Hummer SUV 2000"


def test_paper_templates_of_the_released_code():
    expected = {
        "dtd": "A surface with a {} texture.", "eurosat": "A centered satellite photo of {}.",
        "fgvc_aircraft": "A photo of a {}, a type of aircraft.", "flowers102": "A photo of a {}, a type of flower.",
        "food101": "A photo of {}, a type of food.", "oxford_pets": "A photo of a {}, a type of pet.",
        "stanford_cars": "A photo of a {}.", "caltech101": "This is a photo of a {}", "caltech256": "A photo of a {}.",
        "pcam": "{}", "cifar10": "This is a photo of a {}", "imagenet": "This is a photo of a {}",
        "tinyimagenet": "This is a photo of a {}", "sun397": "This is a photo of a {}",
    }
    for ds, template in expected.items():
        assert get_prompts(ds, "paper").templates == [template], ds
    for ds in DATASETS:
        assert get_prompts(ds, "train").templates == ["This is a photo of a {}"]


def test_paper_name_fixes():
    aircraft = get_prompts("fgvc_aircraft").classnames
    assert aircraft[0] == "boeing 707-320" and "a300b4" in aircraft and "f-16a/b" in aircraft
    assert "boeing 717" in aircraft and "boeing boeing 717" not in aircraft
    flowers = get_prompts("flowers102").classnames
    assert flowers[11] == "colts foot" and "ball moss" in flowers and "pink yellow dahlia?" in flowers
    assert get_prompts("eurosat").classnames[1] == "a forest"
    pcam = get_prompts("pcam").classnames
    assert pcam[1] == "This is a photo of lymph node tumor tissue." and "healthy" in pcam[0]
    assert get_prompts("cifar100", "train").classnames[1] == "aquarium fish"
    assert get_prompts("fashion_mnist").classnames[0] == "t shirt top"


def test_package_lists_match_torchvision():
    from torchvision.datasets import FashionMNIST, Flowers102

    assert curated_classnames("fashion_mnist") == list(FashionMNIST.classes)
    # clip-benchmark renamed three flowers; order agrees with torchvision's
    diff = [(a, b) for a, b in zip(curated_classnames("flowers102"), Flowers102.classes) if a != b]
    assert diff == [("globe flower", "globe-flower"), ("pink and yellow dahlia", "pink-yellow dahlia?"),
                    ("air plant", "ball moss")]
    assert curated_classnames("mnist") == curated_classnames("digits") == [str(d) for d in range(10)]
    assert curated_classnames("eurosat")[0] == "annual crop land"  # torchvision's sorted folders: AnnualCrop
    assert curated_classnames("oxford_pets")[:2] == ["Abyssinian", "American Bulldog"]  # CLASS-ID order


def test_data_files_are_consistent():
    paper = data_json("paper")
    assert set(paper["datasets"]) <= set(DATASETS)
    for ds, cfg in paper["datasets"].items():
        assert set(cfg.get("fixes", [])) <= set(NAME_FIXES), ds
        assert set(cfg.get("renames", {})) <= set(curated_classnames(ds)), ds
        if "classnames" in cfg:
            assert len(cfg["classnames"]) == NUM_CLASSES[ds], ds
    sources = data_json("ensemble")["sources"]
    assert set(DATASETS) <= set(sources)
    assert set(data_json("ensemble")["templates"]) == {ds for ds, s in sources.items() if s == "here"}


def test_aliases_reuse_the_parent_set():
    for alias, parent in ALIASES.items():
        for style in PROMPT_STYLES:
            a, p = get_prompts(alias, style), get_prompts(parent, style)
            assert (a.classnames, a.templates) == (p.classnames, p.templates)


# --- raw class names: folder datasets and the consistency check ------------------------------------------

def test_folder_dataset_uses_raw_names_and_generic_templates():
    raw = ["aquarium_fish", "T-shirt/top", "Apple_Pie"]
    paper = get_prompts("folder:/data/mine", "paper", classnames=raw)
    assert paper.classnames == ["aquarium fish", "t shirt top", "apple pie"]
    assert paper.templates == ["This is a photo of a {}"]
    ens = get_prompts("folder:/data/mine", "ensemble", classnames=raw)
    assert ens.classnames == ["aquarium fish", "T-shirt/top", "Apple Pie"]
    assert ens.templates == get_prompts("imagenet", "ensemble").templates
    assert get_prompts("my_set", "train", classnames=raw).classnames == paper.classnames


def test_agft_train_style_is_agfts_imagenet_rule():
    """AGFT's clip_dataset.py: reference name of each wnid, '_' and '-' as spaces, case kept, with a full stop."""
    p = get_prompts("imagenet", "agft_train")
    assert p.templates == ["This is a photo of a {}."] and "imagenet_classes_names.txt" in p.names_source
    wnids = sorted(data_json("imagenet_reference_names")["names"])
    expected = {"n01440764": "tench", "n01629819": "European fire salamander", "n02124075": "Egyptian cat",
                "n02085782": "Japanese spaniel", "n03444034": "go kart", "n03590841": "jack o' lantern",
                "n02012849": "crane", "n03126707": "crane"}
    assert {w: p.classnames[wnids.index(w)] for w in expected} == expected
    assert p.texts()[wnids.index("n02124075")] == ["This is a photo of a Egyptian cat."]
    train = get_prompts("imagenet", "train")  # the TeCoA lineage lower-cases and has no full stop
    assert train.classnames[wnids.index("n02124075")] == "egyptian cat" and train.templates[0][-1] == "}"


def test_folder_of_imagenet_wnids_gets_imagenet_names():
    """ImageNet train as an ImageFolder (wnid folders) is named like the registered set, in every style."""
    wnids = ["n01443537", "n02124075"]
    for style in PROMPT_STYLES:
        folder = get_prompts("folder:/data/imagenet/train", style, classnames=wnids)
        whole = get_prompts("imagenet", style)
        positions = [sorted(data_json("imagenet_reference_names")["names"]).index(w) for w in wnids]
        assert folder.classnames == [whole.classnames[i] for i in positions], style
        assert folder.templates == whole.templates and "2 ImageNet wnid class folders" in folder.names_source
    # not every folder is a wnid: the raw-name rule
    assert get_prompts("folder:/x", "paper", classnames=["n01443537", "cat"]).classnames == ["n01443537", "cat"]


def test_registered_dataset_with_raw_names_of_the_right_length_uses_curated_names():
    raw = ["apple", "aquarium_fish"] + [f"c{i}" for i in range(98)]
    assert get_prompts("cifar100", classnames=raw).classnames[1] == "aquarium fish"


def test_clean_classname():
    assert clean_classname("aquarium_fish") == "aquarium fish"
    assert clean_classname("apartment_building/outdoor", "train") == "apartment building outdoor"
    assert clean_classname("T-shirt/top", "paper") == "t shirt top"
    assert clean_classname("Apple_Pie", "ensemble") == "Apple Pie"
    assert clean_classname("head of a  crocodile", "ensemble") == "head of a crocodile"


# --- errors name the fix -----------------------------------------------------------------------------------

def test_unknown_style():
    with pytest.raises(PmgaftError, match=r"unknown prompt style 'papr'.*Did you mean 'paper'.*ensemble"):
        get_prompts("cifar10", "papr")
    with pytest.raises(PmgaftError, match="prompt style"):
        clean_classname("x", "nope")


def test_unknown_dataset_lists_close_matches():
    with pytest.raises(PmgaftError, match=r"unknown dataset 'cifar1'.*'cifar10'.*folder:PATH") as err:
        get_prompts("cifar1")
    assert isinstance(err.value, ValueError)
    with pytest.raises(PmgaftError, match="unknown dataset"):
        curated_classnames("nope")


def test_folder_dataset_needs_classnames():
    with pytest.raises(PmgaftError, match=r"'folder:/x'.*classnames="):
        get_prompts("folder:/x")


def test_length_mismatch_is_explained():
    with pytest.raises(PmgaftError, match=r"'cifar10' has 10 classes.*data has 3 \(a, b, c\).*folder:PATH"):
        get_prompts("cifar10", classnames=["a", "b", "c"])


def test_prompts_validate_templates():
    with pytest.raises(PmgaftError, match="exactly one"):
        Prompts(dataset="x", style="paper", classnames=["a"], templates=["no placeholder"])


def test_clip_benchmark_python_code_is_never_imported(monkeypatch):
    from pmgaft.prompts import _sources

    for name in [m for m in sys.modules if m.split(".")[0] == "clip_benchmark"]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    _sources._clip_benchmark_dir.cache_clear()
    _sources.clip_benchmark_json.cache_clear()
    for ds in ("oxford_pets", "pcam", "cifar10"):
        for style in PROMPT_STYLES:
            get_prompts(ds, style)
    assert not [m for m in sys.modules if m.split(".")[0] == "clip_benchmark"]


# --- the reference (docs/protocols.md) names and prompts ------------------------------------------------------------

def _refine(name: str) -> str:
    return name.lower().replace("_", " ").replace("-", " ").replace("/", " ")


def test_imagenet_reference_list_is_the_first_wordnet_lemma_and_differs_from_open_clip_on_293():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    import timm

    info = Path(timm.__file__).parent / "data" / "_info"
    synsets = (info / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines())
    data = data_json("imagenet_reference_names")
    assert "imagenet_classes_names.txt" in data["_source"] and "timm" in data["_source"]
    names = data["names"]
    assert list(names) == synsets == sorted(synsets)  # label order = sorted wnids
    assert names == {w: lemmas[w].split(",")[0].strip().replace(" ", "_") for w in synsets}
    paper = get_prompts("imagenet").classnames
    assert paper == [_refine(names[w]) for w in synsets]
    assert sum(a != _refine(b) for a, b in zip(paper, IMAGENET_CLASSNAMES)) == 293
    assert paper[synsets.index("n01629819")] == "european fire salamander"
    duplicates = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
    assert duplicates == ["crane", "maillot"]
    assert get_prompts("foolbox_imagenet").classnames == paper


def test_tinyimagenet_uses_the_same_list_for_its_wnids():
    # spot checks against the reference's tinyimagenet_classes_name.txt (TGA-ZSR), refined
    expected = {"n01443537": "goldfish", "n01629819": "european fire salamander", "n02988304": "cd player",
                "n03584254": "ipod", "n03444034": "go kart", "n03902125": "pay phone",
                "n03992509": "potter's wheel", "n04399382": "teddy", "n12267677": "acorn"}
    wnids = sorted(data_json("classnames")["tinyimagenet"])
    for style in ("paper", "train"):
        p = get_prompts("tinyimagenet", style)
        assert p.templates == ["This is a photo of a {}"] and "imagenet_classes_names.txt" in p.names_source
        assert {w: p.classnames[wnids.index(w)] for w in expected} == expected
    with pytest.raises(PmgaftError, match="not ImageNet-1k WordNet ids"):
        imagenet_reference_names(["n00000000"])


# (dataset, attribute of the loader the reference names start from, {label: expected prompt}); the loaders are
# the format-faithful fixtures of tests/dataset_fixtures.py. EuroSAT and PCAM use the reference's fixed strings.
REFERENCE_PROMPTS = [
    ("tinyimagenet", "wnids", {0: "This is a photo of a goldfish", 1: "This is a photo of a egyptian cat"}),
    ("cifar10", "classes", {0: "This is a photo of a airplane", 1: "This is a photo of a automobile"}),
    ("cifar100", "classes", {1: "This is a photo of a aquarium fish", 41: "This is a photo of a lawn mower"}),
    ("stl10", "classes", {0: "This is a photo of a airplane", 7: "This is a photo of a monkey"}),
    ("sun397", "classes", {0: "This is a photo of a abbey", 1: "This is a photo of a apartment building outdoor"}),
    ("food101", "classes", {0: "A photo of apple pie, a type of food.", 1: "A photo of baby back ribs, a type of food."}),
    ("oxford_pets", "classes", {0: "A photo of a abyssinian, a type of pet.",
                                1: "A photo of a american bulldog, a type of pet."}),
    ("flowers102", "classes", {0: "A photo of a pink primrose, a type of flower.",
                               11: "A photo of a colts foot, a type of flower.",
                               59: "A photo of a pink yellow dahlia?, a type of flower."}),
    ("dtd", "classes", {0: "A surface with a banded texture.", 1: "A surface with a zigzagged texture."}),
    ("eurosat", "classes", {0: "A centered satellite photo of annual crop land.",
                            1: "A centered satellite photo of a forest.",
                            9: "A centered satellite photo of a sea or a lake."}),
    ("fgvc_aircraft", "classes", {0: "A photo of a boeing 707-320, a type of aircraft.",
                                  1: "A photo of a a300b4, a type of aircraft.",
                                  2: "A photo of a boeing 717, a type of aircraft."}),
    ("imagenet", "wnids", {0: "This is a photo of a tench", 2: "This is a photo of a great white shark"}),
    ("caltech101", "classes", {0: "This is a photo of a faces", 1: "This is a photo of a accordion"}),
    ("caltech256", "categories", {0: "A photo of a ak47.", 1: "A photo of a american flag."}),
    ("caltech256", "classes", {1: "A photo of a american flag.", 2: "A photo of a backpack."}),
    ("stanford_cars", "classes", {0: "A photo of a am general hummer suv.", 2: "A photo of a audi r8 coupe."}),
    ("pcam", "classes", {0: "Tthis is a photo of healthy lymph node tissue.",
                         1: "This is a photo of lymph node tumor tissue."}),
]


@pytest.mark.parametrize(("dataset", "attribute", "expected"), REFERENCE_PROMPTS,
                         ids=[f"{d}-{a}" for d, a, _ in REFERENCE_PROMPTS])
def test_reference_prompts_from_the_loaders_classes(dataset, attribute, expected, tmp_path):
    from dataset_fixtures import FIXTURES
    from pmgaft.data import DATASETS, load_dataset

    FIXTURES[dataset](tmp_path)
    ds = load_dataset(dataset, tmp_path, "all" if "all" in DATASETS[dataset].splits else "test")
    raw = getattr(ds, attribute)
    if attribute == "wnids":
        raw = imagenet_reference_names(raw)
    names, templates = PROMPT_STYLES["paper"].build(dataset, raw)
    assert {label: templates[0].format(names[label]) for label in expected} == expected
    # the registered list (what get_prompts uses without data) gives the same prompts where it is the same list
    if len(raw) == NUM_CLASSES[dataset]:
        full = get_prompts(dataset, "paper", classnames=ds.classes)
        assert {label: full.texts()[label][0] for label in expected} == expected


def test_folder_of_imagenet_wnids_follows_the_styles_label_map():
    """TTC scores 999-class ImageNet: a wnid folder holding the dropped 'maillot' n03710637 drops it as well."""
    wnids = ["n01443537", "n03710637", "n04599235"]
    folder = get_prompts("folder:/data/imagenet/train", "ttc", classnames=wnids)
    whole = get_prompts("imagenet", "ttc")
    order = sorted(data_json("imagenet_reference_names")["names"])
    assert folder.label_map == [0, None, 1] and "n03710637" in whole.label_note + folder.label_note
    assert folder.classnames == [whole.classnames[whole.label_map[order.index(w)]] for w in (wnids[0], wnids[2])]
    assert get_prompts("folder:/x", "paper", classnames=wnids).label_map is None  # paper keeps all 1000
