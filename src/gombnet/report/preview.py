"""A quick look at what a simulation preset produces: images, label masks and column overlays."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import GombnetError

# colours for classes within a layer mask, and for layers in the overlay
_CLASS_COLOURS = np.array(
    [
        [1.00, 0.85, 0.10],  # yellow
        [0.20, 0.60, 1.00],  # blue
        [1.00, 0.25, 0.25],  # red
        [0.30, 0.90, 0.30],  # green
        [0.85, 0.40, 1.00],  # violet
        [1.00, 0.55, 0.10],  # orange
    ]
)
_LAYER_COLOURS = ["#ff3b30", "#00c8ff", "#7cff4f", "#ffcc00"]
_CLASS_MARKERS = ["o", "s", "^", "D", "v", "P"]


def save_preview(
    preset,
    path: str | os.PathLike,
    *,
    n_samples: int = 3,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Simulate a few samples and save a PNG showing them with their labels.

    One row per sample: the simulated image (title: twist, pixel size, dose), one panel per
    layer with that layer's class masks in colour over the faint image, and the image with
    every labelled column marked (colour = layer, marker = class).

    Parameters
    ----------
    preset : Preset, str or Path
        A preset, a built-in preset name or a preset TOML path.
    path : path-like
        Output PNG file.
    n_samples : int
        Number of samples (rows), 1 to 20.
    seed : int
        Seed of the ``numpy.random.Generator`` used for the samples.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The written file.
    """
    from matplotlib.figure import Figure

    from ..simulation.presets import load_preset
    from ..simulation.sample import simulate_sample

    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or not 1 <= n_samples <= 20:
        raise GombnetError(f"n_samples must be an integer from 1 to 20, got {n_samples!r}")
    preset = load_preset(preset)
    path = Path(path)
    rng = np.random.default_rng(seed)
    samples = [simulate_sample(preset, rng) for _ in range(int(n_samples))]

    n_layers, n_cls = preset.n_layers, len(preset.class_names)
    n_cols = 2 + n_layers
    panel = 3.3
    fig = Figure(figsize=(panel * n_cols, (panel + 0.45) * n_samples + 0.6), dpi=110)
    fig.suptitle(f"gombnet preset '{preset.name}': {preset.description}", fontsize=10)
    for row, s in enumerate(samples):
        img = s.image
        lo, hi = np.percentile(img, [0.5, 99.5])
        disp = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
        p = s.params
        size = img.shape[0]
        fov_nm = size * p["pixel_size_angstrom"] / 10
        axes = [fig.add_subplot(n_samples, n_cols, row * n_cols + i + 1) for i in range(n_cols)]

        twist = f"twist {p['twist_deg']:.1f}°, " if "twist_deg" in p else ""
        axes[0].imshow(disp, cmap="gray", interpolation="nearest")
        axes[0].set_title(
            f"{twist}{p['pixel_size_angstrom']:.3f} Å/px ({fov_nm:.1f} nm)\n"
            f"dose {p['dose_counts_per_px']:.0f} counts/px",
            fontsize=8,
        )
        for layer in range(n_layers):
            rgb = np.repeat(0.3 * disp[:, :, None], 3, axis=2)
            for c in range(n_cls):
                m = s.masks[layer * n_cls + c].astype(bool)
                rgb[m] = _CLASS_COLOURS[c % len(_CLASS_COLOURS)]
            ax = axes[1 + layer]
            ax.imshow(rgb, interpolation="nearest")
            in_layer = s.columns["class"][s.columns["layer"] == layer]
            counts = np.bincount(in_layer, minlength=n_cls)
            title = f"layer {layer} ({preset.materials[layer]}) masks\n" + ", ".join(
                f"{name} {n}" for name, n in zip(preset.class_names, counts)
            )
            if p.get(f"edge_layer{layer}"):
                title += ", edge"
            ax.set_title(title, fontsize=8)
        ax = axes[-1]
        ax.imshow(disp, cmap="gray", interpolation="nearest")
        for layer in range(n_layers):
            for c in range(n_cls):
                sel = (s.columns["layer"] == layer) & (s.columns["class"] == c)
                if not sel.any():
                    continue
                ax.scatter(
                    s.columns["x_px"][sel],
                    s.columns["y_px"][sel],
                    s=7 if n_cls == 1 else 9,
                    marker=_CLASS_MARKERS[c % len(_CLASS_MARKERS)],
                    facecolors="none",
                    edgecolors=_LAYER_COLOURS[layer % len(_LAYER_COLOURS)],
                    linewidths=0.7,
                    label=f"L{layer} {preset.class_names[c]}" if row == 0 else None,
                )
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(size - 0.5, -0.5)
        extra = ""
        if "substitution_scenario" in p:
            from ..simulation.presets import SCENARIOS

            d = preset.dopant.lower()
            fr = ", ".join(f"{p[f'{d}_fraction_layer{i}']:.2f}" for i in range(n_layers))
            extra = f"\n{SCENARIOS[int(p['substitution_scenario'])]}, {preset.dopant} x = {fr}"
        ax.set_title(f"columns (colour = layer){extra}", fontsize=8)
        if row == 0:
            ax.legend(loc="upper right", fontsize=6, markerscale=1.5, framealpha=0.7)
        for a in axes:
            a.set_xticks([])
            a.set_yticks([])
    # class colour key for the mask panels
    colour_names = ["yellow", "blue", "red", "green", "violet", "orange"]
    key = ", ".join(f"{name}: {colour_names[c % 6]}" for c, name in enumerate(preset.class_names))
    fig.text(0.5, 0.005, f"mask colours - {key}", ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png")
    return path
