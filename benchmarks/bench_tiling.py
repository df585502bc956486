"""Time and peak memory of tiled inference and atom finding with cheap fake models.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_tiling.py [--big]``
(``--big`` adds an 8192 x 8192 image; needs ~2 GB of memory).

Peak memory is reported two ways: the tracemalloc peak of Python/numpy allocations made
during the call (numpy reports its buffers to tracemalloc), and the process's maximum
resident set size so far (ru_maxrss, never decreases).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc

import numpy as np
from scipy import ndimage

from gombnet.inference.atoms import find_atoms
from gombnet.inference.tiling import predict_tiled, tta_predict


def cheap_model(batch: np.ndarray) -> np.ndarray:
    """Two layers, one class each: the image and its complement (clipped to [0, 1])."""
    p = np.clip(batch, 0.0, 1.0)
    return np.concatenate([p, 1.0 - p], axis=1)


def _maxrss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024**2 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere


def bench_tiling(size: int, tile_px: int = 256, overlap_px: int = 64, batch_size: int = 4) -> None:
    rng = np.random.default_rng(0)
    image = rng.random((size, size), dtype=np.float32)
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    out = predict_tiled(image, cheap_model, n_layers=2, classes_per_layer=1, tile_px=tile_px,
                        overlap_px=overlap_px, batch_size=batch_size)
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out_mb = out.nbytes / 1024**2
    print(f"predict_tiled {size}x{size} (C=2, tile {tile_px}, overlap {overlap_px}, batch {batch_size}): "
          f"{dt:.2f} s, tracemalloc peak {peak / 1024**2:.0f} MB "
          f"(output alone {out_mb:.0f} MB, output+weight {out_mb * 1.5:.0f} MB), maxrss {_maxrss_mb():.0f} MB")
    del out


def bench_tta(size: int) -> None:
    rng = np.random.default_rng(0)
    image = rng.random((size, size), dtype=np.float32)
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    mean, std = tta_predict(image, cheap_model, n_layers=2, classes_per_layer=1, transforms="d4")
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"tta_predict {size}x{size} (C=2, 8 D4 passes): {dt:.2f} s, tracemalloc peak "
          f"{peak / 1024**2:.0f} MB (one (C,H,W) array {mean.nbytes / 1024**2:.0f} MB)")


def bench_find_atoms() -> None:
    """512 x 512 x 2 probability map with ~2500 atoms, ~10 % of them in touching pairs."""
    rng = np.random.default_rng(1)
    size, spacing = 512, 14.5
    probs = np.zeros((2, size, size), np.float32)
    n_atoms = 0
    for c in range(2):
        g = np.arange(7.0, size - 7.0, spacing)
        xx, yy = np.meshgrid(g, g)
        xx = xx + rng.uniform(-2, 2, xx.shape)
        yy = yy + rng.uniform(-2, 2, yy.shape)
        # every tenth atom gets a touching partner 6 px to the right
        xp, yp = xx.ravel()[::10] + 6.0, yy.ravel()[::10]
        xs, ys = np.r_[xx.ravel(), xp], np.r_[yy.ravel(), yp]
        ok = (xs < size - 1) & (ys < size - 1)
        delta = np.zeros((size, size), np.float32)
        delta[np.rint(ys[ok]).astype(int), np.rint(xs[ok]).astype(int)] = 1.0
        blob = ndimage.gaussian_filter(delta, 2.0)
        probs[c] = np.clip(blob / ndimage.gaussian_filter(np.pad(np.ones((1, 1)), 20), 2.0).max(), 0, 1)
        n_atoms += int(ok.sum())
    find_atoms(probs)  # warm-up (imports)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        atoms = find_atoms(probs)
        times.append(time.perf_counter() - t0)
    print(f"find_atoms 2x512x512, {n_atoms} atoms placed, {len(atoms['x_px'])} found: "
          f"best {min(times) * 1e3:.1f} ms, median {np.median(times) * 1e3:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big", action="store_true", help="also run 8192 x 8192")
    args = parser.parse_args()
    bench_find_atoms()
    for size in (512, 4096) + ((8192,) if args.big else ()):
        bench_tiling(size)
    bench_tta(2048)


if __name__ == "__main__":
    main()
