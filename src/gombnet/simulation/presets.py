"""Simulation presets: every range the HAADF-STEM simulator draws from, read from TOML files.

A preset is a TOML file; the built-in ones live in ``gombnet/simulation/presets/*.toml``
(``graphene``, ``ws2-wsse``). A user writes a new material or microscope preset by copying one
of them and changing numbers - no code. The file layout::

    name = "my-preset"            # optional, defaults to the file name
    description = "..."
    image_size_px = 256
    class_names = ["W", "S2", "SSe"]   # per-layer classes, in channel order

    [structure]  materials, lattice_strain, interlayer_spacing_angstrom, twist_deg, ...
    [defects]    vacancy_fraction, vibration_sigma_angstrom, n_holes, ...
    [substitution]  (optional) host, dopant, scenario_weights, ... fractions
    [probe]      energy_kev, convergence_mrad, source_sigma_angstrom, defocus_angstrom, ...
    [image]      pixel_size_angstrom, atom_sigma_angstrom, z_exponent, heavy_atom_scale, ...
    [noise]      dose_counts_per_px, background_amplitude, ... jitter, drift
    [labels]     disk_radius_angstrom

Every numeric "range" is ``[low, high]`` (a single number means a fixed value) and is drawn
uniformly per image, except ``dose_counts_per_px`` which is drawn log-uniformly. Keys
missing from a file take the defaults listed in :data:`SCHEMA` (mostly "effect off").
See the built-in TOML files for the meaning of each key.

Column classes are named by what a column holds: the element for single-atom columns
(``"C"``, ``"B"``, ``"N"``, ``"W"``, ``"Mo"``) and the composition for chalcogen pairs, elements
sorted alphabetically (``"S2"``, ``"SSe"``, ``"Se2"``). ``class_names`` must contain every
class the preset can produce; extra names give empty channels.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import GombnetError
from .lattices import ATOMIC_NUMBER, alloy_endmember, get_material

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

PRESET_DIR = Path(__file__).resolve().parent / "presets"

# substitution scenarios, chosen per image; the int code is stored in Sample.params
SCENARIOS = ("pristine", "one_sublayer", "one_layer", "both_layers")

# kinds of value:
#   range      [low, high] any sign            nonneg   [low, high] >= 0
#   positive   [low, high] > 0                  fraction [low, high] within [0, 1]
#   intrange   [low, high] integers >= 0        prob     number within [0, 1]
#   posfloat   number > 0                       int      integer
#   str, strlist, bool, weights (list of 4 numbers >= 0, not all 0)
# (section, key, kind, default); section "" is the top level
SCHEMA: tuple[tuple[str, str, str, Any], ...] = (
    ("", "name", "str", ""),
    ("", "description", "str", ""),
    ("", "image_size_px", "int", 256),
    ("", "n_layers", "int", None),
    ("", "class_names", "strlist", None),
    ("structure", "materials", "strlist", None),
    ("structure", "lattice_strain", "range", (0.0, 0.0)),
    ("structure", "interlayer_spacing_angstrom", "nonneg", (3.35, 3.35)),
    ("structure", "twist_deg", "range", (0.0, 60.0)),
    ("structure", "small_twist_probability", "prob", 0.0),
    ("structure", "small_twist_deg", "nonneg", (0.0, 5.0)),
    ("structure", "rotation_deg", "range", (0.0, 360.0)),
    ("defects", "vacancy_fraction", "fraction", (0.0, 0.0)),
    ("defects", "chalcogen_vacancy_fraction", "fraction", (0.0, 0.0)),
    ("defects", "vibration_sigma_angstrom", "nonneg", (0.0, 0.0)),
    ("defects", "n_holes", "intrange", (0, 0)),
    ("defects", "hole_radius_angstrom", "nonneg", (3.0, 8.0)),
    ("defects", "hole_both_layers_probability", "prob", 0.5),
    ("defects", "edge_probability", "prob", 0.0),
    ("defects", "boundary_roughness_angstrom", "nonneg", (0.0, 0.0)),
    ("substitution", "host", "str", ""),
    ("substitution", "dopant", "str", ""),
    ("substitution", "max_per_column", "int", 1),
    ("substitution", "scenario_weights", "weights", (1.0, 1.0, 1.0, 1.0)),
    ("substitution", "sublayer_fraction", "fraction", (0.0, 1.0)),
    ("substitution", "layer_fraction", "fraction", (0.0, 0.5)),
    ("substitution", "both_fraction", "fraction", (0.0, 0.5)),
    ("substitution", "vegard", "bool", True),
    ("probe", "energy_kev", "positive", (60.0, 60.0)),
    ("probe", "convergence_mrad", "positive", (30.0, 30.0)),
    ("probe", "source_sigma_angstrom", "nonneg", (0.0, 0.0)),
    ("probe", "defocus_angstrom", "range", (0.0, 0.0)),
    ("probe", "astigmatism_angstrom", "nonneg", (0.0, 0.0)),
    ("probe", "c3_um", "range", (0.0, 0.0)),
    ("probe", "probe_tail_fraction", "fraction", (0.0, 0.0)),
    ("probe", "probe_tail_sigma_angstrom", "nonneg", (1.5, 1.5)),
    ("image", "pixel_size_angstrom", "positive", (0.106, 0.106)),
    ("image", "atom_sigma_angstrom", "nonneg", (0.2, 0.2)),
    ("image", "z_exponent", "positive", (1.7, 1.7)),
    ("image", "heavy_atom_scale", "positive", (1.0, 1.0)),
    ("image", "heavy_atom_min_z", "int", 37),
    ("noise", "dose_counts_per_px", "positive", (1000.0, 1000.0)),
    ("noise", "background_amplitude", "nonneg", (0.0, 0.0)),
    ("noise", "background_length_angstrom", "positive", (10.0, 10.0)),
    ("noise", "amorphous_carbon_per_angstrom2", "nonneg", (0.0, 0.0)),
    ("noise", "read_noise", "nonneg", (0.0, 0.0)),
    ("noise", "line_offset", "nonneg", (0.0, 0.0)),
    ("noise", "line_gain", "nonneg", (0.0, 0.0)),
    ("noise", "jitter_sigma_angstrom", "nonneg", (0.0, 0.0)),
    ("noise", "drift_shear", "range", (0.0, 0.0)),
    ("noise", "drift_stretch", "range", (0.0, 0.0)),
    ("labels", "disk_radius_angstrom", "posfloat", 0.5),
)
_SECTIONS = {s for s, *_ in SCHEMA if s}
# noise and scan parameters drawn uniformly per image, in the order of ``Sample.params``
NOISE_PARAMS = (
    "background_amplitude",
    "background_length_angstrom",
    "amorphous_carbon_per_angstrom2",
    "read_noise",
    "line_offset",
    "line_gain",
    "jitter_sigma_angstrom",
    "drift_shear",
    "drift_stretch",
)
_LOG_UNIFORM = {"dose_counts_per_px"}

Range = tuple[float, float]


@dataclass(frozen=True)
class Preset:
    """Everything the simulator needs to draw one training sample (see the module docstring).

    Build one with :func:`load_preset`; field names equal the TOML keys. Ranges are
    ``(low, high)`` tuples drawn uniformly per image (``dose_counts_per_px`` log-uniformly).

    Attributes (main ones)
    ----------------------
    name : str
    n_layers : int
        Number of stacked layers (2 for twisted bilayers); layer 0 is the bottom one.
    class_names : tuple of str
        Per-layer column classes in channel order (e.g. ``("W", "S2", "SSe")``).
    image_size_px : int
        Default output size (square).
    materials : tuple of str
        Material of each layer (see :func:`gombnet.simulation.lattices.list_materials`).
    disk_radius_angstrom : float
        Radius [Å] of the label disk drawn at every column.
    """

    name: str
    n_layers: int
    class_names: tuple[str, ...]
    image_size_px: int
    materials: tuple[str, ...]
    description: str = ""
    # structure
    lattice_strain: Range = (0.0, 0.0)
    interlayer_spacing_angstrom: Range = (3.35, 3.35)
    twist_deg: Range = (0.0, 60.0)
    small_twist_probability: float = 0.0
    small_twist_deg: Range = (0.0, 5.0)
    rotation_deg: Range = (0.0, 360.0)
    # defects
    vacancy_fraction: Range = (0.0, 0.0)
    chalcogen_vacancy_fraction: Range = (0.0, 0.0)
    vibration_sigma_angstrom: Range = (0.0, 0.0)
    n_holes: tuple[int, int] = (0, 0)
    hole_radius_angstrom: Range = (3.0, 8.0)
    hole_both_layers_probability: float = 0.5
    edge_probability: float = 0.0
    boundary_roughness_angstrom: Range = (0.0, 0.0)
    # substitution (host == "" means none)
    host: str = ""
    dopant: str = ""
    max_per_column: int = 1
    scenario_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    sublayer_fraction: Range = (0.0, 1.0)
    layer_fraction: Range = (0.0, 0.5)
    both_fraction: Range = (0.0, 0.5)
    vegard: bool = True
    # probe
    energy_kev: Range = (60.0, 60.0)
    convergence_mrad: Range = (30.0, 30.0)
    source_sigma_angstrom: Range = (0.0, 0.0)
    defocus_angstrom: Range = (0.0, 0.0)
    astigmatism_angstrom: Range = (0.0, 0.0)
    c3_um: Range = (0.0, 0.0)
    probe_tail_fraction: Range = (0.0, 0.0)
    probe_tail_sigma_angstrom: Range = (1.5, 1.5)
    # image
    pixel_size_angstrom: Range = (0.106, 0.106)
    atom_sigma_angstrom: Range = (0.2, 0.2)
    z_exponent: Range = (1.7, 1.7)
    heavy_atom_scale: Range = (1.0, 1.0)
    heavy_atom_min_z: int = 37
    # noise and scan
    dose_counts_per_px: Range = (1000.0, 1000.0)
    background_amplitude: Range = (0.0, 0.0)
    background_length_angstrom: Range = (10.0, 10.0)
    amorphous_carbon_per_angstrom2: Range = (0.0, 0.0)
    read_noise: Range = (0.0, 0.0)
    line_offset: Range = (0.0, 0.0)
    line_gain: Range = (0.0, 0.0)
    jitter_sigma_angstrom: Range = (0.0, 0.0)
    drift_shear: Range = (0.0, 0.0)
    drift_stretch: Range = (0.0, 0.0)
    # labels
    disk_radius_angstrom: float = 0.5
    source: str = field(default="", compare=False)

    @property
    def n_channels(self) -> int:
        """Number of mask channels: ``n_layers * len(class_names)``, layer-major."""
        return self.n_layers * len(self.class_names)

    @property
    def has_substitution(self) -> bool:
        """True when the preset substitutes chalcogens (e.g. S by Se)."""
        return bool(self.host)

    @property
    def has_chalcogens(self) -> bool:
        """True when any layer is a 2H MX2 (has chalcogen columns)."""
        return any(get_material(m).kind == "mx2" for m in self.materials)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Keys of every ``Sample.params`` drawn with this preset, in a fixed order.

        See :func:`gombnet.simulation.sample.simulate_sample` for their meaning.
        """
        n = self.n_layers
        names = ["pixel_size_angstrom", "rotation_deg"]
        if n >= 2:
            names.append("twist_deg")
            names += [f"twist_deg_layer{i}" for i in range(2, n)]
            names.append("interlayer_spacing_angstrom")
        names += [f"lattice_constant_angstrom_layer{i}" for i in range(n)]
        names += [f"vacancy_fraction_layer{i}" for i in range(n)]
        if self.has_chalcogens:
            names += [f"chalcogen_vacancy_fraction_layer{i}" for i in range(n)]
        names += ["vibration_sigma_angstrom", "n_holes", "boundary_roughness_angstrom"]
        names += [f"edge_layer{i}" for i in range(n)]
        if self.has_substitution:
            d = self.dopant.lower()
            names += ["substitution_scenario", "substitution_sublayer"]
            names += [f"{d}_fraction_target_layer{i}" for i in range(n)]
            names += [f"{d}_fraction_layer{i}" for i in range(n)]
        names += [
            "energy_kev",
            "convergence_mrad",
            "source_sigma_angstrom",
            "defocus_angstrom",
            "astigmatism_angstrom",
            "astigmatism_angle_deg",
            "c3_um",
            "probe_tail_fraction",
            "probe_tail_sigma_angstrom",
            "atom_sigma_angstrom",
            "z_exponent",
            "heavy_atom_scale",
            "dose_counts_per_px",
            *NOISE_PARAMS,
        ]
        return tuple(names)

    def to_dict(self) -> dict[str, Any]:
        """The preset as a TOML-shaped dict (sections as sub-dicts), e.g. to store with a dataset.

        ``preset_from_dict(preset.to_dict())`` gives back an equal preset.
        """
        out: dict[str, Any] = {}
        for section, key, _kind, _default in SCHEMA:
            value = getattr(self, key)
            if section == "substitution" and not self.host:
                continue
            value = list(value) if isinstance(value, tuple) else value
            (out.setdefault(section, {}) if section else out)[key] = value
        return out

    def to_toml(self) -> str:
        """The preset as TOML text with every key (defaults included), e.g. to store with a dataset.

        ``load_preset`` of the text (saved as a ``.toml`` file) gives back an equal preset.
        """
        data = self.to_dict()
        lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
        for section, table in data.items():
            if isinstance(table, dict):
                lines += ["", f"[{section}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    """One preset value as TOML: the types a preset holds (str, bool, int, finite float, lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def list_presets() -> list[str]:
    """Names of the built-in presets (TOML files shipped with gombnet), sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(name_or_path: str | Path) -> Preset:
    """Load a built-in preset by name or a preset TOML file by path.

    Parameters
    ----------
    name_or_path : str or Path
        A built-in name (see :func:`list_presets`) or a path to a ``.toml`` file.

    Returns
    -------
    Preset

    Raises
    ------
    GombnetError
        Unknown preset, unreadable or malformed TOML, unknown key, wrong type, negative or
        inverted range - with a one-line message naming the key.
    """
    if isinstance(name_or_path, Preset):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    if path.suffix.lower() != ".toml" and text in list_presets():
        path = PRESET_DIR / f"{text}.toml"
    elif path.suffix.lower() != ".toml":
        raise GombnetError(
            f"unknown preset {text!r}; built-in presets: {', '.join(list_presets())} "
            "(or give a path to a .toml file)"
        )
    if not path.is_file():
        raise GombnetError(f"preset file {path} not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise GombnetError(f"malformed TOML in preset {path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GombnetError(f"cannot read preset {path}: {exc}") from None
    return preset_from_dict(data, name=path.stem, source=str(path))


def with_overrides(preset: Preset | str | Path, settings) -> Preset:
    """A copy of ``preset`` with some keys set from ``KEY=VALUE`` strings (e.g. a command line).

    Lets a simulation follow a microscope (``probe.energy_kev=80``) or widen a training range
    (``noise.dose_counts_per_px=[100, 1000]``) without copying the preset's TOML file. Every
    value goes through the same checks as a TOML file's, and the result keeps the preset's
    name; datasets store the full preset (with the new values) beside the images.

    Parameters
    ----------
    preset : Preset, str or Path
        A loaded preset, a built-in name or a ``.toml`` path.
    settings : iterable of str
        ``SECTION.KEY=VALUE`` or ``KEY=VALUE`` (no two sections share a key). ``VALUE``
        is a TOML value (``80``, ``[0.5, 1.0]``, ``true``, ``"graphene"``); a bare word is a
        string. A later setting of the same key wins.

    Returns
    -------
    Preset

    Raises
    ------
    GombnetError
        A setting without ``=``, an unknown key, or a value the key does not accept
        - with a one-line message naming the setting.
    """
    preset = load_preset(preset)
    settings = [settings] if isinstance(settings, str) else list(settings)
    if not settings:
        return preset
    data = preset.to_dict()
    section_of = {key: section for section, key, _kind, _default in SCHEMA}  # keys are unique
    for setting in settings:
        text = str(setting)
        where, sep, raw = text.partition("=")
        where, raw = where.strip(), raw.strip()
        if not sep or not where or not raw:
            raise GombnetError(f"preset setting {text!r} must look like SECTION.KEY=VALUE")
        section, _, key = where.rpartition(".")
        if key not in section_of or (section and section != section_of[key]):
            raise GombnetError(f"unknown preset key {where!r} in setting {text!r} (see `gombnet presets --details`)")
        section = section_of[key]
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word, e.g. a material name
        (data.setdefault(section, {}) if section else data)[key] = value
    return preset_from_dict(data, name=preset.name, source=f"{preset.source or preset.name} with {', '.join(settings)}")


def _where(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _convert(section: str, key: str, kind: str, value: Any) -> Any:
    """Check one TOML value against its kind; return it in the Preset's type."""
    where = _where(section, key)
    if kind in ("range", "nonneg", "positive", "fraction", "intrange"):
        if _is_number(value):
            value = [value, value]  # a single number is a fixed value
        if not (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)):
            raise GombnetError(f"preset key {where} must be [low, high] (two numbers), got {value!r}")
        low, high = value
        if kind == "intrange" and not all(isinstance(v, int) for v in value):
            raise GombnetError(f"preset key {where} must be two integers, got {value!r}")
        if low > high:
            raise GombnetError(f"preset key {where}: low {low} > high {high} (inverted range)")
        if kind in ("nonneg", "intrange", "fraction") and low < 0:
            raise GombnetError(f"preset key {where} must not be negative, got {value!r}")
        if kind == "positive" and low <= 0:
            raise GombnetError(f"preset key {where} must be > 0, got {value!r}")
        if kind == "fraction" and high > 1:
            raise GombnetError(f"preset key {where} is a fraction and must be <= 1, got {value!r}")
        if kind == "intrange":
            return (int(low), int(high))
        return (float(low), float(high))
    if kind == "prob":
        if not _is_number(value) or not 0 <= value <= 1:
            raise GombnetError(f"preset key {where} must be a probability in [0, 1], got {value!r}")
        return float(value)
    if kind == "posfloat":
        if not _is_number(value) or value <= 0:
            raise GombnetError(f"preset key {where} must be a number > 0, got {value!r}")
        return float(value)
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise GombnetError(f"preset key {where} must be an integer, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise GombnetError(f"preset key {where} must be a string, got {value!r}")
        return value
    if kind == "strlist":
        if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
            raise GombnetError(f"preset key {where} must be a non-empty list of strings, got {value!r}")
        return tuple(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise GombnetError(f"preset key {where} must be true or false, got {value!r}")
        return value
    if kind == "weights":
        if not (isinstance(value, list) and len(value) == 4 and all(_is_number(v) for v in value)):
            raise GombnetError(
                f"preset key {where} must be 4 numbers (weights of {', '.join(SCENARIOS)}), got {value!r}"
            )
        if min(value) < 0 or sum(value) <= 0:
            raise GombnetError(f"preset key {where} must be >= 0 and not all 0, got {value!r}")
        return tuple(float(v) for v in value)
    raise AssertionError(kind)  # pragma: no cover


def column_class_name(elements: list[str] | tuple[str, ...]) -> str:
    """Class name of a projected column from its elements: ``["S", "Se"] -> "SSe"``.

    Elements are sorted alphabetically and a count > 1 is appended (``"S2"``, ``"Se2"``).
    """
    counts: dict[str, int] = {}
    for e in elements:
        counts[e] = counts.get(e, 0) + 1
    return "".join(e + (str(c) if c > 1 else "") for e, c in sorted(counts.items()))


def possible_classes(preset_like: Preset) -> set[str]:
    """Every column class the preset's materials and substitution can produce."""
    out: set[str] = set()
    for name in preset_like.materials:
        mat = get_material(name)
        if mat.kind == "graphene":
            out.add("C")
        elif mat.kind == "hbn":
            out |= {"B", "N"}
        else:
            x = mat.chalcogen
            out |= {mat.metal, column_class_name([x, x])}
            if preset_like.host and x == preset_like.host:
                d = preset_like.dopant
                out.add(column_class_name([x, d]))
                if preset_like.max_per_column == 2:
                    out.add(column_class_name([d, d]))
    return out


def preset_from_dict(data: dict[str, Any], *, name: str = "", source: str = "") -> Preset:
    """Validate a TOML-shaped dict (as :func:`load_preset` reads) and build a :class:`Preset`.

    Parameters
    ----------
    data : dict
        Top-level keys and section sub-dicts, as in the preset TOML files.
    name : str
        Name used when ``data`` has no ``name`` key.
    source : str
        Where the data came from (kept for messages).
    """
    if not isinstance(data, dict):
        raise GombnetError("preset must be a TOML table")
    schema = {(s, k): (kind, default) for s, k, kind, default in SCHEMA}
    values: dict[str, Any] = {}
    for top_key, top_value in data.items():
        if top_key in _SECTIONS:
            if not isinstance(top_value, dict):
                raise GombnetError(f"preset key {top_key} must be a [{top_key}] section")
            for key, value in top_value.items():
                if (top_key, key) not in schema:
                    known = ", ".join(k for s, k, *_ in SCHEMA if s == top_key)
                    raise GombnetError(f"unknown preset key {top_key}.{key} (known: {known})")
                values[key] = _convert(top_key, key, schema[(top_key, key)][0], value)
        elif ("", top_key) in schema:
            values[top_key] = _convert("", top_key, schema[("", top_key)][0], top_value)
        else:
            raise GombnetError(
                f"unknown preset key {top_key} (top-level keys: name, description, image_size_px, "
                f"n_layers, class_names; sections: {', '.join(sorted(_SECTIONS))})"
            )
    for section, key, _kind, default in SCHEMA:
        if key not in values:
            if default is None and key != "n_layers":
                raise GombnetError(f"preset is missing required key {_where(section, key)}")
            values[key] = default
    if not values["name"]:
        values["name"] = name or "custom"

    materials = values["materials"]
    for m in materials:
        try:
            get_material(m)
        except GombnetError as exc:
            raise GombnetError(f"preset key structure.materials: {exc}") from None
    if not 1 <= len(materials) <= 4:
        raise GombnetError(f"preset key structure.materials must list 1 to 4 layers, got {len(materials)}")
    if values["n_layers"] is None:
        values["n_layers"] = len(materials)
    elif values["n_layers"] != len(materials):
        raise GombnetError(
            f"preset key n_layers = {values['n_layers']} but structure.materials lists {len(materials)} layers"
        )
    if not 16 <= values["image_size_px"] <= 16384:
        raise GombnetError(f"preset key image_size_px must be in 16..16384, got {values['image_size_px']}")
    if not 1 <= values["heavy_atom_min_z"] <= 118:
        raise GombnetError(f"preset key image.heavy_atom_min_z must be an atomic number in 1..118, "
                           f"got {values['heavy_atom_min_z']}")
    if len(set(values["class_names"])) != len(values["class_names"]):
        raise GombnetError(f"preset key class_names has duplicates: {list(values['class_names'])}")
    if values["lattice_strain"][0] <= -0.5 or values["lattice_strain"][1] >= 0.5:
        raise GombnetError(
            f"preset key structure.lattice_strain must lie within (-0.5, 0.5), got {list(values['lattice_strain'])}"
        )
    if values["drift_stretch"][0] <= -0.5:
        raise GombnetError(f"preset key noise.drift_stretch must be > -0.5, got {values['drift_stretch']}")

    if values["host"] or values["dopant"] or "substitution" in data:
        _check_substitution(values)

    preset = Preset(source=source, **{k: values[k] for k in (f.name for f in fields(Preset)) if k in values})
    missing = possible_classes(preset) - set(preset.class_names)
    if missing:
        raise GombnetError(
            f"preset key class_names {list(preset.class_names)} lacks classes the structure can "
            f"produce: {sorted(missing)}"
        )
    return preset


def _check_substitution(values: dict[str, Any]) -> None:
    host, dopant = values["host"], values["dopant"]
    for key, el in (("host", host), ("dopant", dopant)):
        if el not in ("S", "Se", "Te"):
            raise GombnetError(f"preset key substitution.{key} must be a chalcogen (S, Se, Te), got {el!r}")
    if host == dopant:
        raise GombnetError("preset keys substitution.host and substitution.dopant must differ")
    if values["max_per_column"] not in (1, 2):
        raise GombnetError(
            f"preset key substitution.max_per_column must be 1 or 2, got {values['max_per_column']}"
        )
    hosts = [m for m in values["materials"] if get_material(m).kind == "mx2" and get_material(m).chalcogen == host]
    if not hosts:
        raise GombnetError(f"preset key substitution.host = {host!r} but no layer material contains {host}")
    if values["max_per_column"] == 1:
        for key in ("layer_fraction", "both_fraction"):
            if values[key][1] > 0.5:
                raise GombnetError(
                    f"preset key substitution.{key} must be <= 0.5 with max_per_column = 1 "
                    f"(at most one {dopant} per column), got {list(values[key])}"
                )
    if values["vegard"]:
        for m in hosts:
            if alloy_endmember(get_material(m), dopant) is None:
                raise GombnetError(
                    f"no lattice constant known for the {dopant} end member of {m}; set substitution.vegard = false"
                )
    assert dopant in ATOMIC_NUMBER
