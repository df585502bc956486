"""Publication figures of the physics analyses (matplotlib, no pyplot state).

Every function returns a :class:`matplotlib.figure.Figure` created directly (Agg
canvas, no global backend switch, no need to close it), with labelled axes in Å, a
sans-serif 8–9 pt style sized for a journal column, and the Okabe–Ito colour-blind-safe
palette. :func:`save_figure` writes PNG, PDF or SVG atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..analysis.bonds import BondStatistics, _as_positions, _as_values, _positive, bond_statistics
from ..analysis.composition import (
    A_JANUS_WSSE_ANGSTROM,
    A_WS2_ANGSTROM,
    VegardFit,
    vegard_lattice_constant,
)
from ..analysis.moire import parse_origin, stacking_reference_values
from ..analysis.stats import KDEComparison, binned_kde
from ..analysis.strain import DeformationMaps
from ..atomic import atomic_path
from ..errors import GombnetError

__all__ = [
    "COLORS",
    "bond_length_figure",
    "deformation_figure",
    "kde_comparison_figure",
    "registry_map_figure",
    "save_figure",
    "stacking_map_figure",
    "vegard_figure",
]

# Okabe & Ito (2008) colour-blind-safe palette.
COLORS = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "yellow": "#F0E442",
    "black": "#000000",
    "grey": "#7F7F7F",
}

_STYLE = {
    "font.family": "sans-serif",
    "font.size": 8.5,
    "axes.labelsize": 9,
    "axes.titlesize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.3,
    "xtick.direction": "out",
    "ytick.direction": "out",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "svg.fonttype": "none",
    "pdf.fonttype": 42,
}

# Legends drawn over data lines: opaque white box without an edge.
_LEGEND_BOX = dict(frameon=True, facecolor="white", edgecolor="none", framealpha=0.9)

_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def _new_figure(figsize) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _map_axes(ax) -> None:
    """Axes of a map: x and y in Å, framed on all four sides."""
    ax.set_xlabel("x [Å]")
    ax.set_ylabel("y [Å]")
    ax.spines["top"].set_visible(True)
    ax.spines["right"].set_visible(True)


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


# --------------------------------------------------------------------------- bonds


def bond_length_figure(
    distances_angstrom,
    *,
    stats: BondStatistics | None = None,
    reference_angstrom: float | None = 1.42,
    reference_label: str = "ideal graphene",
    bond_label: str = "C–C",
    bins: int | str = "auto",
    title: str | None = None,
    figsize: tuple[float, float] = (3.5, 2.7),
    undistorted_angstrom=None,
) -> Figure:
    """Histogram of bond lengths with mean and FWHM annotated (cf. Fig. 2e of the paper).

    Parameters
    ----------
    distances_angstrom : (P,) array
        Bond lengths [Å].
    stats : BondStatistics, optional
        Precomputed :func:`~gombnet.analysis.bonds.bond_statistics`; computed if None.
    reference_angstrom : float or None
        Ideal bond length drawn as a dashed line [Å] (graphene 1.42 Å); None for none.
    reference_label : str
        Legend text of the reference line.
    bond_label : str
        Name of the bond for the axis label, e.g. "C–C" or "W–W".
    bins : int or str
        Histogram bins (numpy ``histogram_bin_edges`` rules).
    title : str, optional
    figsize : (float, float)
        Inches.
    undistorted_angstrom : (Q,) array, optional
        The same bonds measured with the image's shared distortion undone
        (:meth:`~gombnet.analysis.strain.LatticeDistortion.undistort`), drawn as a dashed
        density with its FWHM.

    Returns
    -------
    matplotlib.figure.Figure
    """
    d = _as_values(distances_angstrom, "distances_angstrom", min_count=2)
    st = stats if stats is not None else bond_statistics(d)
    with matplotlib.rc_context(_STYLE):
        fig = _new_figure(figsize)
        ax = fig.add_subplot()
        try:
            edges = np.histogram_bin_edges(d, bins=bins)
        except (TypeError, ValueError) as exc:
            raise GombnetError(f"bad bins={bins!r}: {exc}") from None
        counts, edges, _ = ax.hist(
            d, bins=edges, color=COLORS["sky"], edgecolor="white", linewidth=0.4, label=f"bonds (n = {st.count})"
        )
        width = float(edges[1] - edges[0])
        # KDE scaled to counts per bin, for the FWHM construction.
        lo, hi = float(edges[0]), float(edges[-1])
        grid = np.linspace(lo, hi, 600)
        h = max(st.bandwidth_angstrom, (hi - lo) / 600)
        kde = binned_kde(d, grid_angstrom=grid, bandwidth_angstrom=h) * d.size * width
        ax.plot(grid, kde, color=COLORS["blue"], label="kernel density")
        ax.axvline(
            st.mean,
            color=COLORS["vermillion"],
            linewidth=1.1,
            label=f"mean ± sd {st.mean:.3f} ± {st.std:.3f} Å",
        )
        if math.isfinite(st.fwhm):
            half = float(kde.max()) / 2.0
            ax.annotate(
                "",
                xy=(st.peak - st.fwhm / 2, half),
                xytext=(st.peak + st.fwhm / 2, half),
                arrowprops=dict(arrowstyle="<->", color=COLORS["black"], linewidth=0.9, shrinkA=0, shrinkB=0),
            )
            ax.text(
                st.peak + st.fwhm / 2 + 0.01 * (hi - lo),
                half,
                f"FWHM\n{st.fwhm:.3f} Å",
                va="center",
                ha="left",
                fontsize=7.5,
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1.0),
            )
        if undistorted_angstrom is not None:
            u = _as_values(undistorted_angstrom, "undistorted_angstrom", min_count=2)
            su = bond_statistics(u)
            ku = binned_kde(u, grid_angstrom=grid, bandwidth_angstrom=max(su.bandwidth_angstrom, (hi - lo) / 600))
            ax.plot(grid, ku * u.size * width, color=COLORS["orange"], linestyle="--",
                    label=f"scan distortion undone: FWHM {su.fwhm:.3f} Å")
        if reference_angstrom is not None:
            ref = _positive(reference_angstrom, "reference_angstrom", upper=100.0)
            ax.axvline(
                ref, color=COLORS["black"], linestyle="--", linewidth=0.9, label=f"{reference_label} {ref:.2f} Å"
            )
        ax.set_xlabel(f"{bond_label} distance [Å]")
        ax.set_ylabel("bonds per bin")
        # Headroom above the histogram for the legend.
        ax.set_ylim(0, max(float(counts.max()), float(kde.max())) * 1.6)
        ax.legend(loc="upper left", handlelength=1.5, **_LEGEND_BOX)
        if title:
            ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- Vegard


def vegard_figure(
    x,
    a_angstrom,
    *,
    x_err=None,
    a_err_angstrom=None,
    labels: Sequence[str] | None = None,
    fit: VegardFit | None = None,
    a_ws2_angstrom: float = A_WS2_ANGSTROM,
    a_janus_angstrom: float = A_JANUS_WSSE_ANGSTROM,
    title: str | None = None,
    figsize: tuple[float, float] = (3.5, 2.7),
) -> Figure:
    """Lattice constant against Se fraction with Vegard's law (cf. Fig. 3f of the paper).

    Parameters
    ----------
    x : (n,) array
        Se fractions of the measured layers.
    a_angstrom : (n,) array
        Their lattice constants [Å].
    x_err, a_err_angstrom : (n,) arrays, optional
        Error bars (standard errors) in x and in a [Å].
    labels : sequence of str, optional
        One label per point (e.g. "image 1 layer A"), written next to it.
    fit : VegardFit, optional
        A :func:`~gombnet.analysis.composition.fit_vegard` result drawn as a line.
    a_ws2_angstrom, a_janus_angstrom : float
        End points of the law [Å] at x = 0 (WS2) and x = 0.5 (Janus WSSe).
    title : str, optional
    figsize : (float, float)
        Inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    xv = _as_values(x, "x", min_count=1)
    av = _as_values(a_angstrom, "a_angstrom", min_count=1)
    if xv.size != av.size:
        raise GombnetError("x and a_angstrom must have the same length")
    xe = None if x_err is None else _as_values(x_err, "x_err", min_count=xv.size)
    ae = None if a_err_angstrom is None else _as_values(a_err_angstrom, "a_err_angstrom", min_count=xv.size)
    for name, e in (("x_err", xe), ("a_err_angstrom", ae)):
        if e is not None and (e.size != xv.size or np.any(e < 0)):
            raise GombnetError(f"{name} must have one non-negative value per point")
    if labels is not None and len(labels) != xv.size:
        raise GombnetError("labels must have one entry per point")
    with matplotlib.rc_context(_STYLE):
        fig = _new_figure(figsize)
        ax = fig.add_subplot()
        x_hi = max(0.5, float(np.max(xv + (xe if xe is not None else 0))))
        law_x = np.linspace(0.0, 0.5, 2)
        law_a = vegard_lattice_constant(law_x, a_ws2_angstrom=a_ws2_angstrom, a_janus_angstrom=a_janus_angstrom)
        ax.plot(law_x, law_a, color=COLORS["black"], linewidth=1.0, label="Vegard's law")
        if x_hi > 0.5:
            ext = np.array([0.5, min(1.0, x_hi)])
            ax.plot(
                ext,
                vegard_lattice_constant(ext, a_ws2_angstrom=a_ws2_angstrom, a_janus_angstrom=a_janus_angstrom),
                color=COLORS["black"],
                linewidth=1.0,
                linestyle=":",
            )
        ax.plot([0.0, 0.5], [law_a[0], law_a[1]], linestyle="none", marker="s", markersize=4,
                markerfacecolor="white", markeredgecolor=COLORS["black"])
        ax.annotate("WS$_2$", (0.0, law_a[0]), textcoords="offset points", xytext=(4, -10), fontsize=7.5)
        ax.annotate("Janus WSSe", (0.5, law_a[1]), textcoords="offset points", xytext=(-10, 6), fontsize=7.5,
                    ha="right")
        if fit is not None:
            fx = np.linspace(0.0, x_hi, 2)
            ax.plot(
                fx,
                fit.intercept + fit.slope * fx,
                color=COLORS["blue"],
                linestyle="--",
                linewidth=1.0,
                label=f"fit: slope {fit.slope:.3f} ± {fit.slope_err:.3f} Å",
            )
        ax.errorbar(
            xv,
            av,
            xerr=xe,
            yerr=ae,
            fmt="o",
            color=COLORS["vermillion"],
            markersize=4,
            capsize=2,
            elinewidth=0.8,
            label="measured layers",
        )
        if labels is not None:
            for xi, ai, lab in zip(xv, av, labels):
                ax.annotate(str(lab), (xi, ai), textcoords="offset points", xytext=(4, 3), fontsize=6.5)
        ax.set_xlabel("Se fraction $x$ in WS$_{2(1-x)}$Se$_{2x}$")
        ax.set_ylabel("lattice constant $a$ [Å]")
        ax.set_xlim(-0.03, x_hi + 0.03)
        ax.legend(loc="lower right")
        if title:
            ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- moiré map


def stacking_map_figure(
    stacking,
    pixel_size_angstrom: float,
    *,
    sites_angstrom=None,
    site_label: str = "Se–S columns",
    origin_angstrom=(0.0, 0.0),
    a_angstrom: float | None = 3.15,
    cmap: str = "cividis",
    title: str | None = None,
    figsize: tuple[float, float] = (3.6, 3.0),
) -> Figure:
    """Image of the local stacking order with a colour bar in Å (cf. Fig. 4c).

    Parameters
    ----------
    stacking : (H, W) array or dict
        Stacking-order map [Å], or the dict returned by
        :func:`~gombnet.analysis.moire.stacking_map` (its ``"stacking"`` entry is used).
    pixel_size_angstrom : float
        Pixel size [Å/px]; axes are in Å.
    sites_angstrom : (K, 2) array, optional
        Positions ``[x, y]`` [Å] to mark (e.g. Se–S columns).
    site_label : str
        Legend text of the markers.
    origin_angstrom : (float, float)
        Position of the centre of pixel (0, 0) [Å], as given to ``stacking_map``.
    a_angstrom : float or None
        Lattice constant [Å] for marking the registries' values (AB, AA', A'B) on the
        colour bar; None for none.
    cmap : str
        Matplotlib colour map (default "cividis", perceptually uniform and colour-blind safe).
    title : str, optional
    figsize : (float, float)
        Inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(stacking, dict):
        if "stacking" not in stacking:
            raise GombnetError("stacking dict has no 'stacking' map")
        stacking = stacking["stacking"]
    try:
        m = np.asarray(stacking, dtype=np.float64)
    except (TypeError, ValueError):
        raise GombnetError("stacking must be a 2-D numeric array") from None
    if m.ndim != 2 or min(m.shape) < 2:
        raise GombnetError(f"stacking must be a 2-D map, got shape {m.shape}")
    if not np.any(np.isfinite(m)):
        raise GombnetError("stacking map has no finite values")
    px = _positive(pixel_size_angstrom, "pixel_size_angstrom", upper=100.0)
    ox, oy = parse_origin(origin_angstrom)
    rows, cols = m.shape
    extent = (ox - px / 2, ox + (cols - 0.5) * px, oy + (rows - 0.5) * px, oy - px / 2)
    with matplotlib.rc_context(_STYLE):
        fig = _new_figure(figsize)
        ax = fig.add_subplot()
        refs = stacking_reference_values(a_angstrom) if a_angstrom is not None else None
        vmax = float(np.nanmax(m))
        if refs is not None:
            vmax = max(vmax, refs["A'B"])
        im = ax.imshow(m, extent=extent, origin="upper", cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
        _map_axes(ax)
        cb = fig.colorbar(im, ax=ax, shrink=0.9, pad=0.02)
        cb.set_label("local stacking order [Å]")
        if refs is not None:
            for name in ("AB", "AA'", "A'B"):
                cb.ax.axhline(refs[name], color="white", linewidth=0.8)
            sec = cb.ax.secondary_yaxis("left")
            sec.set_yticks([refs["AB"], refs["AA'"], refs["A'B"]], labels=["AB", "AA′", "A′B"])
            sec.tick_params(labelsize=6.5, length=2, pad=1)
        if sites_angstrom is not None:
            sites = _as_positions(sites_angstrom, "sites_angstrom", min_count=0)
            if sites.shape[0]:
                ax.plot(
                    sites[:, 0],
                    sites[:, 1],
                    linestyle="none",
                    marker="o",
                    markersize=3.2,
                    markerfacecolor=COLORS["vermillion"],
                    markeredgecolor="white",
                    markeredgewidth=0.5,
                    label=f"{site_label} (n = {sites.shape[0]})",
                )
                ax.set_xlim(extent[0], extent[1])
                ax.set_ylim(extent[2], extent[3])
                fig.legend(loc="outside upper center", frameon=False, handletextpad=0.3)
        if title:
            ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- strain


def _map_panel(fig, ax, values: np.ndarray, extent, label: str, *, symmetric: bool, cmap: str):
    finite = values[np.isfinite(values)]
    if symmetric:
        lim = float(np.percentile(np.abs(finite), 98)) if finite.size else 1.0
        vmin, vmax = -(lim or 1.0), (lim or 1.0)
    else:
        vmin, vmax = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
    ax.set_facecolor("0.85")
    im = ax.imshow(values, extent=extent, origin="upper", cmap=cmap, vmin=vmin, vmax=vmax,
                   interpolation="nearest")
    _map_axes(ax)
    fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02).set_label(label)


def deformation_figure(maps: DeformationMaps, *, title: str | None = None) -> Figure:
    """Maps of each layer's local lattice rotation and dilatation, and of the local twist.

    Parameters
    ----------
    maps : DeformationMaps
        From :func:`gombnet.analysis.strain.deformation_maps`.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        One row per layer (rotation [deg] and area change [%] against the layer's mean
        lattice, diverging colours centred on 0) and, for two or more layers, the local
        twist [deg] in a third column. Grey: no lattice (holes, beyond an edge).
    """
    if not isinstance(maps, DeformationMaps):
        raise GombnetError("maps must be the DeformationMaps of gombnet.analysis.strain.deformation_maps")
    xs, ys = maps.x_angstrom, maps.y_angstrom
    hx = 0.5 * (xs[1] - xs[0]) if len(xs) > 1 else 0.5
    hy = 0.5 * (ys[1] - ys[0]) if len(ys) > 1 else 0.5
    extent = (xs[0] - hx, xs[-1] + hx, ys[-1] + hy, ys[0] - hy)
    n = len(maps.layers)
    twist = maps.twist_deg is not None
    with matplotlib.rc_context(_STYLE):
        fig = _new_figure((3.1 * (2 + twist), 2.6 * n))
        grid = fig.add_gridspec(n, 2 + twist)
        for k, layer in enumerate(maps.layers):
            _map_panel(fig, fig.add_subplot(grid[k, 0]), maps.grid(layer.rotation_deg), extent,
                       f"layer {k} rotation [°]", symmetric=True, cmap="RdBu_r")
            _map_panel(fig, fig.add_subplot(grid[k, 1]), maps.grid(100.0 * layer.dilatation), extent,
                       f"layer {k} area change [%]", symmetric=True, cmap="PuOr_r")
        if twist:
            _map_panel(fig, fig.add_subplot(grid[:, 2]), maps.twist_deg, extent, "local twist [°]",
                       symmetric=False, cmap="cividis")
        fig.suptitle(title or f"local lattice deformation (Gaussian window σ = "
                     f"{maps.layers[0].smoothing_sigma_angstrom:.1f} Å)")
    return fig


def registry_map_figure(registry, pixel_size_angstrom: float, *, title: str | None = None,
                        figsize: tuple[float, float] = (3.9, 3.0)) -> Figure:
    """Map of the local stacking of a graphene bilayer (AA, AB, BA, saddle point).

    Parameters
    ----------
    registry : (H, W) int array
        Class index into :data:`gombnet.analysis.graphene_stacking.STACKING_CLASSES`, -1 where
        undefined (from :func:`~gombnet.analysis.graphene_stacking.graphene_stacking_map`).
    pixel_size_angstrom : float
        Pixel size [Å/px]; axes in Å (pixel (0, 0) centred at 0).
    title : str, optional
    figsize : (float, float)
        Inches.

    Returns
    -------
    matplotlib.figure.Figure
        The map in four colour-blind-safe colours, with each class's share of the area in the
        legend.
    """
    from matplotlib.colors import ListedColormap

    from ..analysis.graphene_stacking import STACKING_CLASSES, stacking_fractions

    reg = np.asarray(registry)
    if reg.ndim != 2 or min(reg.shape) < 2:
        raise GombnetError(f"registry must be a 2-D map, got shape {reg.shape}")
    px = _positive(pixel_size_angstrom, "pixel_size_angstrom", upper=100.0)
    colours = [COLORS["yellow"], COLORS["blue"], COLORS["vermillion"], "#DDDDDD"]
    rows, cols = reg.shape
    extent = (-px / 2, (cols - 0.5) * px, (rows - 0.5) * px, -px / 2)
    shares = stacking_fractions(reg)
    with matplotlib.rc_context(_STYLE):
        fig = _new_figure(figsize)
        ax = fig.add_subplot()
        ax.set_facecolor("white")
        ax.imshow(np.ma.masked_less(reg, 0), extent=extent, origin="upper", cmap=ListedColormap(colours),
                  vmin=-0.5, vmax=3.5, interpolation="nearest")
        _map_axes(ax)
        handles = [Patch(facecolor=c, edgecolor="0.5", linewidth=0.4, label=f"{name} {100 * shares[name]:.0f} %")
                   for c, name in zip(colours, STACKING_CLASSES)]
        fig.legend(handles=handles, loc="outside right center", frameon=False)
        ax.set_title(title or "local stacking")
    return fig


# --------------------------------------------------------------------------- KDE


def kde_comparison_figure(
    result: KDEComparison,
    *,
    labels: tuple[str, str] = ("Se–S sites", "all moiré sites"),
    xlabel: str = "local stacking order [Å]",
    a_angstrom: float | None = 3.15,
    title: str | None = None,
    figsize: tuple[float, float] = (3.5, 2.7),
) -> Figure:
    """Densities at special sites vs all sites with bootstrap bands (cf. Fig. 4e).

    Parameters
    ----------
    result : KDEComparison
        From :func:`~gombnet.analysis.stats.compare_site_distributions`.
    labels : (str, str)
        Names of the site sample and of all sites.
    xlabel : str
        Axis label of the compared value, with its unit.
    a_angstrom : float or None
        Lattice constant [Å] for dotted lines at the registries' stacking values; None
        for none.
    title : str, optional
    figsize : (float, float)
        Inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(result, KDEComparison):
        raise GombnetError("result must be a KDEComparison from compare_site_distributions")
    g = result.grid_angstrom
    pct = round(100 * result.band_level)
    with matplotlib.rc_context(_STYLE):
        fig = _new_figure(figsize)
        ax = fig.add_subplot()
        for key, label, color in (("all", labels[1], COLORS["blue"]), ("sites", labels[0], COLORS["vermillion"])):
            n = getattr(result, f"n_{key}")
            lo, hi = getattr(result, f"band_low_{key}"), getattr(result, f"band_high_{key}")
            if result.n_bootstrap:
                ax.fill_between(g, lo, hi, color=color, alpha=0.25, linewidth=0)
            ax.plot(g, getattr(result, f"density_{key}"), color=color, label=f"{label} (n = {n:,})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("probability density [Å$^{-1}$]")
        ymax = max(float(np.max(result.band_high_sites)), float(np.max(result.band_high_all)),
                   float(np.max(result.density_sites)), float(np.max(result.density_all)))
        ax.set_ylim(0, 1.7 * ymax)  # headroom for the legend and statistics
        ax.set_xlim(g[0], g[-1])
        if a_angstrom is not None:
            refs = stacking_reference_values(a_angstrom)
            for name, shown in (("AB", "AB"), ("AA'", "AA′"), ("A'B", "A′B")):
                if g[0] <= refs[name] <= g[-1]:
                    ax.axvline(refs[name], color=COLORS["grey"], linestyle=":", linewidth=0.8)
                    ax.text(refs[name], 1.0, shown, transform=ax.get_xaxis_transform(), ha="center",
                            va="bottom", fontsize=6.5, color=COLORS["grey"])
        handles, texts = ax.get_legend_handles_labels()
        stats_text = (
            f"MSE = {result.mse:.2e} Å$^{{-2}}$\n"
            f"KS p = {_fmt_p(result.ks_p)}\n"
            f"χ² p = {_fmt_p(result.chi2_p)} ({result.chi2_bins} bins)"
        )
        if result.n_bootstrap:
            stats_text += f"\nbands: {pct} % of {result.n_bootstrap} bootstraps"
        empty = Patch(visible=False)
        ax.legend(handles + [empty], texts + [stats_text], loc="upper left", handlelength=1.5, **_LEGEND_BOX)
        if title:
            ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- saving


def save_figure(fig: Figure, path: str | os.PathLike, *, overwrite: bool = False, dpi: int = 200) -> Path:
    """Write a figure to PNG, PDF or SVG atomically (format from the suffix).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : path-like
        Destination ending in ``.png``, ``.pdf`` or ``.svg``.
    overwrite : bool
        Replace an existing file; otherwise an existing file raises GombnetError.
    dpi : int
        Resolution of raster output (and of rasterised parts of vector output), 50–1200.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    if not isinstance(fig, Figure):
        raise GombnetError("fig must be a matplotlib Figure")
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise GombnetError(f"{path.name}: figure files must end in .png, .pdf or .svg")
    if isinstance(dpi, bool) or not isinstance(dpi, (int, np.integer)) or not 50 <= dpi <= 1200:
        raise GombnetError(f"dpi must be an integer from 50 to 1200, got {dpi!r}")
    # Fixed metadata keeps PDF/SVG output reproducible (no creation date).
    metadata = {"png": {}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}[fmt]
    with atomic_path(path, overwrite=overwrite) as tmp:
        # The temporary file has a ".part" suffix, so the format must be given explicitly.
        fig.savefig(tmp, format=fmt, dpi=int(dpi), metadata=metadata)
    return path
