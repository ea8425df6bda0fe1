"""Training methods: ``METHODS`` (CLI name -> :class:`Method` class), one small module each.

``pmg_aft`` (the paper), baselines ``tecoa`` (FT-adv), ``ft_clean``, ``fare``, ``tga_zsr``, ``comp_tga`` (its
successor), ``agft`` (alignment-guided fine-tuning, CVPR 2026), and ``none`` (the original CLIP, evaluation's
reference row). Each returns named loss terms including ``total``.
"""
from __future__ import annotations

from typing import Any

from pmgaft.methods.agft import Agft
from pmgaft.methods.attention import attention_maps, complementary_maps, image_tokens
from pmgaft.methods.base import AttackSettings, Method
from pmgaft.methods.comp_tga import CompTga
from pmgaft.methods.fare import Fare
from pmgaft.methods.ft_clean import FtClean
from pmgaft.methods.none import NoTraining
from pmgaft.methods.pmg_aft import PmgAft
from pmgaft.methods.tecoa import TeCoA
from pmgaft.methods.tga_zsr import TgaZsr
from pmgaft.utils import lookup

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (PmgAft, TeCoA, FtClean, Fare, TgaZsr, CompTga, Agft,
                                                             NoTraining)}


def build_method(config: Any) -> Method:
    """The method named by ``config.method``, built from the config (PmgaftError on unknown names/bad args)."""
    return lookup(METHODS, config.method, "method").from_config(config)


__all__ = ["METHODS", "Agft", "AttackSettings", "CompTga", "Fare", "FtClean", "Method", "NoTraining", "PmgAft",
           "TeCoA", "TgaZsr", "attention_maps", "build_method", "complementary_maps", "image_tokens"]
