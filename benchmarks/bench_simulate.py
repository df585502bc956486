"""Simulation speed: images per second for every built-in preset, in one process.

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_simulate.py [--n 100] [--repeats 5] [--size 256]

Prints, per preset, the median over repeats of the images/s of ``simulate_sample`` (one
process, one thread). The dataset writer parallelises over processes on top of this.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from gombnet.simulation.presets import list_presets, load_preset  # noqa: E402
from gombnet.simulation.sample import simulate_sample  # noqa: E402


def bench(preset, n: int, repeats: int, size: int | None) -> list[float]:
    rng = np.random.default_rng(0)
    simulate_sample(preset, rng, image_size_px=size)  # warm-up: ASE unit cells, FFT plans
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            simulate_sample(preset, rng, image_size_px=size)
        rates.append(n / (time.perf_counter() - t0))
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="images per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=None, help="image size [px] (default: the preset's)")
    ap.add_argument("--presets", nargs="*", default=None, help="default: all built-in presets")
    args = ap.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.processor() or platform.machine()}")
    for name in args.presets or list_presets():
        p = load_preset(name)
        size = args.size or p.image_size_px
        rates = bench(p, args.n, args.repeats, args.size)
        print(
            f"{name:12s} {size}x{size} px: {statistics.median(rates):6.1f} images/s "
            f"(median of {args.repeats} x {args.n}; min {min(rates):.1f}, max {max(rates):.1f})"
        )


if __name__ == "__main__":
    main()
