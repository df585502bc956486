"""Speed and memory of image -> atoms.csv on this machine.

    python benchmarks/bench_predict.py --model graphene          # a shipped model or run folder
    python benchmarks/bench_predict.py --model graphene --big    # also 4096 x 4096 peak memory
    python benchmarks/bench_predict.py --model graphene --big --device cuda   # on a GPU
    python benchmarks/bench_predict.py --model graphene --no-lattice-sites   # without the site check

Prints the median time (5 repeats) of a 512 x 512 image to atoms.csv, excluding model
loading (target <= 1 s on a 2-core CPU), and, with --big, the wall time and the peak resident
memory of a separate process predicting a 4096 x 4096 image (target < 2 GB).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def simulated(size: int, seed: int = 0) -> np.ndarray:
    from gombnet.demo import demo_image

    return demo_image("graphene", seed=seed, size_px=size).image


def time_512(model_name: str, repeats: int, device: str, lattice_sites: bool = True) -> None:
    import torch

    from gombnet.inference.predict import predict
    from gombnet.nn.checkpoint import load_model
    from gombnet.report.outputs import atoms_to_csv

    model = load_model(model_name, device=device)
    image = simulated(512)
    times, parts = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeats + 1):
            t0 = time.perf_counter()
            result = predict(image, model, pixel_size_angstrom=0.106, lattice_sites=lattice_sites)
            (Path(tmp) / "atoms.csv").write_text(atoms_to_csv(result.atoms))
            if k:  # the first call warms up torch
                times.append(time.perf_counter() - t0)
                parts.append(result.timings)
    print(f"512x512 -> atoms.csv: median {statistics.median(times):.3f} s over {repeats} runs "
          f"({len(result.atoms['x_px'])} atoms, {device}, {torch.get_num_threads()} torch threads)")
    for key in parts[0]:
        print(f"  {key}: {statistics.median(p[key] for p in parts):.3f} s")


def big_child(model_name: str, size: int, device: str, lattice_sites: bool = True) -> None:
    from gombnet.inference.predict import predict
    from gombnet.nn.checkpoint import load_model

    model = load_model(model_name, device=device)
    rng = np.random.default_rng(0)
    tile = simulated(1024)
    # a large field of view: tiles of a simulated image with noise, so every tile differs
    image = np.tile(tile, (size // 1024, size // 1024)) + rng.normal(0, 0.05, (size, size)).astype(np.float32)
    t0 = time.perf_counter()
    result = predict(image, model, pixel_size_angstrom=0.106, lattice_sites=lattice_sites)
    dt = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = ""
    if device.startswith("cuda"):
        import torch

        gpu = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
    print(f"{size}x{size}: {dt:.1f} s, {len(result.atoms['x_px'])} atoms, peak resident memory {peak_mb:.0f} MB "
          f"(whole process, torch included){gpu}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="graphene")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--big-size", type=int, default=4096)
    ap.add_argument("--device", default="cpu", help="torch device of the network: cpu, cuda, mps")
    ap.add_argument("--no-lattice-sites", dest="lattice_sites", action="store_false",
                    help="predict without the site check of single atoms")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        big_child(args.model, args.big_size, args.device, args.lattice_sites)
        return
    time_512(args.model, args.repeats, args.device, args.lattice_sites)
    if args.big:
        subprocess.run([sys.executable, __file__, "--child", "--model", args.model, "--big-size",
                        str(args.big_size), "--device", args.device]
                       + ([] if args.lattice_sites else ["--no-lattice-sites"]), check=True)


if __name__ == "__main__":
    main()
