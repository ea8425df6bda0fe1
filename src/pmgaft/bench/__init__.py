"""``pmgaft bench``: what a training step, an attack, clean inference and data loading cost, and how close to
the device's GEMM peak they run (useful FLOPs counted explicitly, :mod:`pmgaft.bench.flops`).

The library entry point is :func:`run_bench` (the CLI is :mod:`pmgaft.bench.cli`); :func:`per_image_costs`
turns its JSON into the per-image costs ``pmgaft reproduce`` estimates with.
"""
from pmgaft.bench.costs import PerImageCosts, measure_costs, per_image_costs
from pmgaft.bench.flops import (FORWARD_EQUIVALENTS, counted_forward_flops, forward_equivalents,
                                tower_forward_flops, vit_forward_flops)
from pmgaft.bench.peak import GemmPeak, measure_gemm_peak
from pmgaft.bench.released import released_pmg_aft_step
from pmgaft.bench.runner import BenchConfig, run_bench
from pmgaft.bench.variants import VARIANTS, apply_variants

__all__ = ["FORWARD_EQUIVALENTS", "VARIANTS", "BenchConfig", "GemmPeak", "PerImageCosts", "apply_variants",
           "counted_forward_flops", "forward_equivalents", "measure_costs", "measure_gemm_peak",
           "per_image_costs", "released_pmg_aft_step", "run_bench", "tower_forward_flops", "vit_forward_flops"]
