"""How long after a microscope file is saved its atoms are on disk, with `gombnet predict --watch`.

    python benchmarks/bench_watch.py                       # the real 1024 px WS2 Velox file, ws2-wsse
    python benchmarks/bench_watch.py --file ../shared/real/twisted_bilayer_graphene.npz --model graphene

Starts `gombnet predict --watch` on an empty folder (model loading not counted: the first file is
dropped in only once the watch has started), then copies the file in --repeats times under new
names, each once the previous result exists, and prints the time from the end of each copy to its
summary.json: the poll interval (the file must be unchanged between two looks) plus reading,
inference and writing. Also prints the same with --analyze.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REAL = Path(__file__).resolve().parents[2] / "shared" / "real"


def latencies(file: Path, model: str, interval_s: float, repeats: int, analyze: bool) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        incoming, out = Path(tmp) / "incoming", Path(tmp) / "results"
        incoming.mkdir()
        cmd = [sys.executable, "-m", "gombnet", "predict", "--watch", str(incoming), "--model", model,
               "--out", str(out), "--interval", str(interval_s), "--idle-exit", "120"]
        proc = subprocess.Popen(cmd + (["--analyze"] if analyze else []), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            assert proc.stdout is not None
            proc.stdout.readline()  # "watching ...": the model is loaded
            times = []
            for k in range(repeats):
                name = f"scan_{k:03d}{file.suffix}"
                shutil.copyfile(file, incoming / f".{name}")
                (incoming / f".{name}").rename(incoming / name)  # appears complete, as a finished save
                t0 = time.perf_counter()
                target = out / f"scan_{k:03d}" / ("analysis.json" if analyze else "summary.json")
                while not target.exists():
                    if proc.poll() is not None:
                        raise SystemExit(f"the watch stopped: {proc.stdout.read()}")
                    time.sleep(0.01)
                times.append(time.perf_counter() - t0)
        finally:
            proc.terminate()
            proc.wait()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=REAL / "ws2_velox.emd")
    parser.add_argument("--model", default="ws2-wsse")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval [s]")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not args.file.is_file():
        raise SystemExit(f"error: {args.file}: no such file")
    for analyze in (False, True):
        t = latencies(args.file, args.model, args.interval, args.repeats, analyze)
        print(f"{args.file.name} ({args.model}, poll {args.interval:g} s{', --analyze' if analyze else ''}): "
              f"saved -> {'analysis' if analyze else 'atoms'} on disk median {statistics.median(t):.2f} s "
              f"(min {min(t):.2f}, max {max(t):.2f}, {len(t)} files)")


if __name__ == "__main__":
    main()
