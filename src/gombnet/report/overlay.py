"""Overlay of found atoms on the image: all layers together, then one panel per layer."""

from __future__ import annotations

import numpy as np

# Okabe-Ito colour-blind-safe colours: one per layer
LAYER_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7")
# marker per species within a layer
SPECIES_MARKERS = ("o", "s", "^", "D", "v")


def overlay_figure(image: np.ndarray, atoms: dict, *, n_layers: int, class_names, pixel_size_angstrom: float,
                   title: str = "", marker_size: float | None = None):
    """Figure with the image and atoms coloured by layer (marker by species), plus one
    panel per layer. With one layer: the bare image beside its atoms coloured by species.

    Parameters
    ----------
    image : (H, W) array
    atoms : dict
        ``layer``, ``species``, ``x_px``, ``y_px`` arrays (x = column, y = row).
    pixel_size_angstrom : float
        For the scale bar [Å/px].

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    h, w = image.shape
    n_panels = 1 + n_layers
    fig = Figure(figsize=(4.2 * n_panels, 4.6), constrained_layout=True)
    axes = fig.subplots(1, n_panels)
    lo, hi = np.percentile(image, [0.5, 99.5])
    if marker_size is None:  # shrink markers on large fields of view
        marker_size = float(np.clip(4000.0 / max(h, w), 0.5, 12))
    single = n_layers == 1  # one layer: colour tells the species apart instead of the layer
    legend_panel = 1 if single else 0
    handles = []
    for k, ax in enumerate(axes):
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        layers = [] if single and k == 0 else range(n_layers) if k == 0 else [k - 1]
        for layer in layers:
            for s, name in enumerate(class_names):
                sel = (atoms["layer"] == layer) & (atoms["species"] == name)
                colour = LAYER_COLOURS[(s if single else layer) % len(LAYER_COLOURS)]
                marker = SPECIES_MARKERS[s % len(SPECIES_MARKERS)]
                ax.scatter(atoms["x_px"][sel], atoms["y_px"][sel], s=marker_size, marker=marker,
                           facecolors="none" if k == 0 else colour, edgecolors=colour, linewidths=0.6)
                if k == legend_panel:
                    handles.append(Line2D([], [], ls="", marker=marker, mfc="none" if k == 0 else colour, mec=colour,
                                          label=f"{name} ({int(sel.sum())})" if single else
                                          f"layer {layer} {name} ({int(sel.sum())})"))
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(("image" if single else "all layers") if k == 0 else f"layer {k - 1}")
        _scale_bar(ax, w, h, pixel_size_angstrom)
    axes[legend_panel].legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.8)
    if title:
        fig.suptitle(title)
    return fig


def _scale_bar(ax, w: int, h: int, pixel_size_angstrom: float) -> None:
    """A white bar of a round length [Å] in the lower left corner."""
    field = w * pixel_size_angstrom
    length = next(v for v in (100, 50, 20, 10, 5, 2, 1, 0.5) if v <= field / 4) if field >= 2 else field / 4
    x0, y0 = 0.05 * w, 0.93 * h
    ax.plot([x0, x0 + length / pixel_size_angstrom], [y0, y0], color="white", lw=3, solid_capstyle="butt")
    ax.text(x0, y0 - 0.02 * h, f"{length:g} Å", color="white", fontsize=9, va="bottom")
