"""Tests for gombnet.inference.io.read_image: real files, synthetic round trips, bad input."""

from __future__ import annotations

import json
import shutil
import struct
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from gombnet.errors import GombnetError
from gombnet.inference.io import SUPPORTED_EXTENSIONS, MicroscopeImage, read_image

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def texture(rng, shape=(64, 64), sigma=2.0):
    """Smooth non-periodic random image (positive, float64)."""
    img = ndi.gaussian_filter(rng.normal(size=shape), sigma)
    return 100.0 + 50.0 * img / img.std()


def read_quiet(path, **kwargs):
    """read_image and fail on any warning (calibrated files must not warn)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return read_image(path, **kwargs)


def assert_good(result, shape):
    assert isinstance(result, MicroscopeImage)
    image, px, meta = result
    assert image.shape == shape
    assert image.dtype == np.float32
    assert np.isfinite(image).all()
    assert isinstance(px, float) and px > 0
    json.dumps(meta, allow_nan=False)  # metadata must be plain JSON
    assert meta["pixel_size_angstrom"] == px
    return image, px, meta


def assert_error(path, match=None, **kwargs):
    path = Path(path)
    with pytest.raises(GombnetError) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert path.name in message
    assert "\n" not in message
    if match:
        assert match in message, message
    return message


def write_imagej_tif(path, data, size_per_px, unit, y_size_per_px=None):
    y = size_per_px if y_size_per_px is None else y_size_per_px
    tifffile.imwrite(path, data, imagej=True, resolution=(1.0 / size_per_px, 1.0 / y), metadata={"unit": unit})


def write_velox(path, images, pixel_m=1.0e-11, unit="m"):
    """Minimal Velox EMD: {detector: (H, W, frames) array}, metadata JSON as a uint8 column per frame."""
    with h5py.File(path, "w") as f:
        f["Version"] = np.array([b'{"version": "11", "format": "Velox"}'], dtype=object)
        for i, (detector, data) in enumerate(images.items()):
            group = f.create_group(f"Data/Image/{i:032x}")
            group["Data"] = data
            meta = {
                "BinaryResult": {
                    "Detector": detector,
                    "PixelSize": {"width": repr(pixel_m), "height": repr(pixel_m)},
                    "PixelUnitX": unit,
                    "PixelUnitY": unit,
                },
                "Optics": {"AccelerationVoltage": "80000"},
            }
            text = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
            column = np.zeros((text.size + 64, data.shape[2]), dtype=np.uint8)
            column[: text.size, :] = text[:, None]
            group["Metadata"] = column


def write_ser(path, frames, delta_x_m, delta_y_m):
    """Minimal TIA SER file (version 0x0210, 2-D float32 elements), as read by ncempy.

    TIA stores the rows of an element bottom-up (ncempy flips them back), so each frame is
    written flipped and the reader must return it as given here.
    """
    n, height, width = frames.shape
    head = struct.pack("<hhh", 0x4949, 0x0197, 0x0210)
    head += struct.pack("<iiii", 0x4122, 0x4152, n, n)
    dim = struct.pack("<iddii", n, 0.0, 1.0, 0, 0) + struct.pack("<i", 0)  # no description, no units
    offset_array_offset = len(head) + 8 + len(dim)
    head += struct.pack("<ii", offset_array_offset, 1) + dim
    pos = offset_array_offset + 8 * n
    elements, data_offsets = [], []
    for frame in frames:
        el = struct.pack("<ddi", 0.0, delta_x_m, 0) + struct.pack("<ddi", 0.0, delta_y_m, 0)
        el += struct.pack("<hii", 7, width, height) + np.flipud(frame).astype("<f4").tobytes()
        data_offsets.append(pos)
        elements.append(el)
        pos += len(el)
    tag_offsets = [pos + 8 * k for k in range(n)]
    tags = b"".join(struct.pack("<ii", 0x4152, 1000 + k) for k in range(n))
    body = struct.pack(f"<{n}i", *data_offsets) + struct.pack(f"<{n}i", *tag_offsets)
    Path(path).write_bytes(head + body + b"".join(elements) + tags)


# --------------------------------------------------------------------------------------------
# real files
# --------------------------------------------------------------------------------------------

needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="shared/real not present")

REAL_FILES = [
    # file, shape, pixel size [Å/px] from SOURCES.md, format
    ("twisted_bilayer_graphene.npz", (512, 512), 0.1062, "npz"),
    ("ws2_velox.emd", (1024, 1024), 0.1062, "velox-emd"),
    ("mos2_se_implanted.dm3", (1024, 1024), 0.1270, "dm3"),
    # the tag says 7.8 pm/px; SOURCES.md notes the FFT suggests ~9 pm/px, we report the tag
    ("janus_wsse_partial.tif", (1024, 1024), 0.078, "tiff"),
]


@needs_real
@pytest.mark.parametrize("name, shape, px_expected, fmt", REAL_FILES)
def test_real_files_load_with_their_calibration(name, shape, px_expected, fmt):
    image, px, meta = assert_good(read_quiet(REAL / name), shape)
    assert px == pytest.approx(px_expected, abs=1e-3)
    assert meta["calibration"] == "file"
    assert meta["format"] == fmt
    assert image.std() > 0


@needs_real
def test_real_velox_and_dm_microscope_metadata():
    _, _, meta = read_quiet(REAL / "ws2_velox.emd")
    assert meta["microscope"]["voltage_kV"] == pytest.approx(60.0)  # SOURCES: 60 kV HAADF
    assert meta["microscope"]["detector"] == "HAADF"
    assert meta["original_dtype"] == "uint16"
    assert meta["original_shape"] == [1024, 1024, 1]
    _, _, meta = read_quiet(REAL / "mos2_se_implanted.dm3")
    assert meta["microscope"]["voltage_kV"] == pytest.approx(60.0)
    assert meta["original_dtype"] == "uint32"


@needs_real
def test_real_npz_matches_raw_array():
    image, _, meta = read_quiet(REAL / "twisted_bilayer_graphene.npz")
    with np.load(REAL / "twisted_bilayer_graphene.npz") as z:
        raw = z["im_array"]
    np.testing.assert_array_equal(image, raw.astype(np.float32))
    assert meta["npz_key"] == "im_array"


@needs_real
def test_truncated_emd_and_dm3_raise_gombnet_error(tmp_path):
    for name in ("ws2_velox.emd", "mos2_se_implanted.dm3"):
        cut = tmp_path / name
        with open(REAL / name, "rb") as f:
            cut.write_bytes(f.read(10_000))
        assert_error(cut)


@needs_real
def test_override_on_real_file(tmp_path):
    _, px, meta = read_quiet(REAL / "janus_wsse_partial.tif", pixel_size_angstrom=0.09)
    assert px == 0.09
    assert meta["calibration"] == "override"
    assert meta["pixel_size_file_angstrom"] == pytest.approx(0.078, abs=1e-3)


# --------------------------------------------------------------------------------------------
# synthetic round trips
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "unit, size_per_px, expected",
    [
        ("nm", 0.0106, 0.106),
        ("pm", 12.5, 0.125),
        ("\\u00B5m", 1.25e-5, 0.125),  # ImageJ's escaped micro sign
        ("micron", 2.0e-5, 0.2),
        ("A", 0.3, 0.3),
    ],
)
def test_tif_imagej_calibration_units(tmp_path, unit, size_per_px, expected):
    rng = np.random.default_rng(1)
    data = texture(rng).astype(np.float32)
    path = tmp_path / "cal.tif"
    write_imagej_tif(path, data, size_per_px, unit)
    image, px, meta = assert_good(read_quiet(path), (64, 64))
    assert px == pytest.approx(expected, rel=1e-6)
    assert meta["calibration"] == "file"
    np.testing.assert_array_equal(image, data)


def test_tif_non_square_pixels_warn_and_average(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "aniso.tif"
    write_imagej_tif(path, texture(rng).astype(np.float32), 0.010, "nm", y_size_per_px=0.012)
    with pytest.warns(UserWarning, match="non-square"):
        _, px, _ = read_image(path)
    assert px == pytest.approx(0.11)


def test_tif_fei_tag_and_print_resolution(tmp_path):
    rng = np.random.default_rng(3)
    data = texture(rng).astype(np.float32)
    fei = tmp_path / "fei.tif"
    ini = "[Scan]\nPixelWidth=1.25e-11\nPixelHeight=1.25e-11\n[Beam]\nHV=300000\n"
    tifffile.imwrite(fei, data, extratags=[(34682, "s", 0, ini, True)])
    _, px, meta = read_quiet(fei)
    assert px == pytest.approx(0.125)
    assert meta["microscope"]["voltage_kV"] == pytest.approx(300.0)

    dpi = tmp_path / "dpi.tif"  # 72 dpi is a print resolution, not a calibration
    tifffile.imwrite(dpi, data, resolution=(72, 72), resolutionunit="INCH")
    with pytest.warns(UserWarning, match="print resolution"):
        _, px, meta = read_image(dpi)
    assert px == 0.106 and meta["calibration"] == "assumed"


def test_tif_ome_and_nion_json_calibration(tmp_path):
    rng = np.random.default_rng(21)
    data = texture(rng).astype(np.float32)
    ome = tmp_path / "cal.ome.tif"
    tifffile.imwrite(
        ome, data, ome=True,
        metadata={
            "PhysicalSizeX": 12.5, "PhysicalSizeXUnit": "pm", "PhysicalSizeY": 12.5, "PhysicalSizeYUnit": "pm"
        },
    )
    _, px, meta = read_quiet(ome)
    assert px == pytest.approx(0.125) and "OME" in meta["calibration_detail"]

    nion = tmp_path / "nion.tif"
    axis = {"offset": 0, "scale": 0.02, "units": "nm"}
    desc = {"spatial_calibrations": [axis, axis], "metadata": {"instrument": {"high_tension": 100000.0}}}
    tifffile.imwrite(nion, data, description=json.dumps(desc), metadata=None)
    _, px, meta = read_quiet(nion)
    assert px == pytest.approx(0.2)
    assert meta["microscope"]["voltage_kV"] == pytest.approx(100.0)


def test_npy_assumes_default_pixel_size_with_warning(tmp_path):
    rng = np.random.default_rng(4)
    data = texture(rng).astype(np.uint16)
    path = tmp_path / "plain.npy"
    np.save(path, data)
    with pytest.warns(UserWarning, match=r"assuming 0\.106 Å/px"):
        image, px, meta = assert_good(read_image(path), (64, 64))
    assert px == 0.106
    assert meta["calibration"] == "assumed"
    assert meta["original_dtype"] == "uint16"
    np.testing.assert_array_equal(image, data.astype(np.float32))
    with pytest.warns(UserWarning, match=r"assuming 0\.2 Å/px"):
        _, px, _ = read_image(path, default_pixel_size_angstrom=0.2)
    assert px == 0.2
    # an override silences the warning
    _, px, meta = read_quiet(path, pixel_size_angstrom=0.15)
    assert px == 0.15 and meta["calibration"] == "override"


@pytest.mark.parametrize(
    "entries, expected",
    [
        ({"pixel_size": np.array("1.25e-11")}, 0.125),  # 0-d string in metres (Gomb-Net style)
        ({"pixel_size": np.float64(1.25e-11)}, 0.125),
        ({"pixel_size_nm": np.float64(0.0125)}, 0.125),
        ({"pixel_size_angstrom": np.float64(0.125)}, 0.125),
        ({"pixel_size": np.array("12.5 pm")}, 0.125),
        ({"pixel_size": np.float64(0.0125), "pixel_unit": np.array("nm")}, 0.125),
    ],
)
def test_npz_pixel_size_rules(tmp_path, entries, expected):
    rng = np.random.default_rng(5)
    data = texture(rng).astype(np.float32)
    path = tmp_path / "arch.npz"
    np.savez(path, im_array=data, **entries)
    image, px, meta = assert_good(read_quiet(path), (64, 64))
    assert px == pytest.approx(expected, rel=1e-9)
    assert meta["calibration"] == "file"
    np.testing.assert_array_equal(image, data)


def test_npz_bare_number_read_as_angstrom_with_warning(tmp_path):
    rng = np.random.default_rng(6)
    path = tmp_path / "bare.npz"
    np.savez(path, image=texture(rng), pixel_size=np.float64(0.15))
    with pytest.warns(UserWarning, match="no unit"):
        _, px, _ = read_image(path)
    assert px == pytest.approx(0.15)


def test_png_rgb_converted_to_grey_with_warning(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
    path = tmp_path / "colour.png"
    Image.fromarray(rgb).save(path)
    with pytest.warns(UserWarning) as record:
        image, px, meta = assert_good(read_image(path), (48, 40))
    messages = [str(w.message) for w in record]
    assert any("converted to grey" in m for m in messages)
    assert meta["calibration"] == "assumed"
    # Rec. 709 luminance (ITU-R BT.709), the same weights as skimage.color.rgb2gray
    expected = 0.2125 * rgb[..., 0] + 0.7154 * rgb[..., 1] + 0.0721 * rgb[..., 2]
    np.testing.assert_allclose(image, expected, rtol=1e-5)

    # a grey picture saved as RGB keeps its values exactly
    grey = rng.integers(0, 256, size=(40, 40), dtype=np.uint8)
    path2 = tmp_path / "grey_as_rgb.png"
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(path2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        image, _, _ = read_image(path2)
    assert any("identical" in str(w.message) for w in record)
    np.testing.assert_allclose(image, grey, rtol=1e-6)


def test_png_16bit_grey_keeps_values(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(8)
    data = rng.integers(0, 60000, size=(40, 50), dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(data).save(path)
    with pytest.warns(UserWarning, match="assuming"):
        image, _, meta = read_image(path)
    assert "converted to grey" not in " ".join(meta["warnings"])
    np.testing.assert_array_equal(image, data.astype(np.float32))


@pytest.mark.parametrize("kind", ["npy", "tif", "velox", "ser", "mrc", "berkeley"])
def test_frame_stacks_sum_and_index(tmp_path, kind):
    rng = np.random.default_rng(9)
    stack = np.stack([texture(rng) for _ in range(5)]).astype(np.float32)  # (frames, H, W)
    path = tmp_path / f"stack.{ 'emd' if kind in ('velox', 'berkeley') else kind }"
    if kind == "npy":
        np.save(path, stack)
    elif kind == "tif":
        write_imagej_tif(path, stack, 0.0125, "nm")
    elif kind == "velox":
        write_velox(path, {"HAADF": np.moveaxis(stack, 0, -1)}, pixel_m=1.25e-11)  # frames last
    elif kind == "ser":
        write_ser(path, stack, 1.25e-11, 1.25e-11)
    elif kind == "mrc":
        from ncempy.io import mrc

        mrc.mrcWriter(path, stack, (1.0, 0.125, 0.125))
    else:
        from ncempy.io import emd

        emd.emdWriter(path, stack, pixel_size=(1.0, 0.0125, 0.0125), pixel_unit=("s", "n_m", "n_m"))

    ctx = pytest.warns(UserWarning, match="assuming") if kind == "npy" else warnings.catch_warnings()
    with ctx:
        if kind != "npy":
            warnings.simplefilter("error")
        image, px, meta = assert_good(read_image(path), (64, 64))
    np.testing.assert_allclose(image, stack.astype(np.float64).sum(axis=0), rtol=1e-5)
    assert meta["frames"]["count"] == 5 and meta["frames"]["mode"] == "sum"
    if kind != "npy":
        assert px == pytest.approx(0.125, rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one, _, meta = read_image(path, frame=2)
        last, _, _ = read_image(path, frame=-1)
    np.testing.assert_array_equal(one, stack[2])
    np.testing.assert_array_equal(last, stack[4])
    assert meta["frames"]["index"] == 2
    assert_error(path, match="out of range", frame=5)


def test_npy_frame_axis_rule_and_uint8_rgb(tmp_path):
    rng = np.random.default_rng(19)
    frames_last = np.stack([texture(rng) for _ in range(3)], axis=-1).astype(np.float32)  # (64, 64, 3)
    path = tmp_path / "last.npy"
    np.save(path, frames_last)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        image, _, meta = read_image(path, frame=1)
    assert not any("grey" in str(w.message) for w in record)  # float data: frames, not colour
    np.testing.assert_array_equal(image, frames_last[..., 1])
    assert meta["frames"]["axis"] == "last" and meta["frames"]["count"] == 3

    rgb = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    path = tmp_path / "rgb.npy"
    np.save(path, rgb)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        image, _, meta = read_image(path)
    assert any("converted to grey" in str(w.message) for w in record)
    assert meta["frames"]["count"] == 1
    np.testing.assert_allclose(image, rgb.astype(float) @ [0.2125, 0.7154, 0.0721], rtol=1e-5)


def test_jpeg_grey(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(20)
    data = np.clip(texture(rng, shape=(64, 80), sigma=3.0), 0, 255).astype(np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(data).save(path, quality=95)
    with pytest.warns(UserWarning, match="assuming"):
        image, _, meta = assert_good(read_image(path), (64, 80))
    assert meta["format"] == "jpeg"
    assert np.corrcoef(image.ravel(), data.ravel())[0, 1] > 0.95  # lossy, but the same picture


def test_align_frames_recovers_known_shifts(tmp_path):
    rng = np.random.default_rng(10)
    big = texture(rng, shape=(100, 100), sigma=1.5)
    offsets = [(0, 0), (3, -2), (-4, 5), (6, 1)]  # (row, col) of each frame's window
    frames = [big[20 + dy : 84 + dy, 20 + dx : 84 + dx] + rng.normal(0, 5, (64, 64)) for dy, dx in offsets]
    path = tmp_path / "drift.npy"
    np.save(path, np.stack(frames).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain, _, _ = read_image(path)
        aligned, _, meta = read_image(path, align_frames=True)
    assert meta["frames"]["aligned"] is True
    # frame k shows big(r + offset_k); moving it by +offset_k registers it with frame 0
    np.testing.assert_allclose(meta["frames"]["shifts_px"], offsets, atol=0.25)
    truth = len(offsets) * big[20:84, 20:84]
    inner = (slice(8, -8), slice(8, -8))  # away from the borders filled by the shift
    err_aligned = np.abs(aligned[inner] - truth[inner]).mean()
    err_plain = np.abs(plain[inner] - truth[inner]).mean()
    assert err_aligned < 0.3 * err_plain


def test_velox_prefers_haadf_and_converts_units(tmp_path):
    rng = np.random.default_rng(11)
    haadf = texture(rng)[..., None].astype(np.uint16)
    bf = texture(rng)[..., None].astype(np.uint16)
    path = tmp_path / "two.emd"
    write_velox(path, {"BF": bf, "HAADF": haadf}, pixel_m=0.0125, unit="nm")
    image, px, meta = read_quiet(path)
    np.testing.assert_array_equal(image, haadf[..., 0])
    assert px == pytest.approx(0.125)
    assert meta["microscope"]["detector"] == "HAADF"
    assert meta["microscope"]["voltage_kV"] == pytest.approx(80.0)
    assert len(meta["datasets"]) == 2


def test_mrc_placeholder_pixel_size_counts_as_uncalibrated(tmp_path):
    from ncempy.io import mrc

    rng = np.random.default_rng(12)
    path = tmp_path / "plain.mrc"
    mrc.mrcWriter(path, texture(rng)[None].astype(np.float32), (1.0, 1.0, 1.0))
    with pytest.warns(UserWarning, match="placeholder"):
        _, px, meta = read_image(path)
    assert px == 0.106 and meta["calibration"] == "assumed"


def test_override_replaces_file_calibration(tmp_path):
    rng = np.random.default_rng(13)
    path = tmp_path / "cal.tif"
    write_imagej_tif(path, texture(rng).astype(np.float32), 0.0106, "nm")
    _, px, meta = read_quiet(path, pixel_size_angstrom=0.2)
    assert px == 0.2
    assert meta["calibration"] == "override"
    assert meta["pixel_size_file_angstrom"] == pytest.approx(0.106)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_missing_directory_empty_and_unsupported(tmp_path):
    assert_error(tmp_path / "nope.emd", match="not found")
    folder = tmp_path / "folder.tif"
    folder.mkdir()
    assert_error(folder, match="directory")
    empty = tmp_path / "empty.dm4"
    empty.write_bytes(b"")
    assert_error(empty, match="empty")
    odd = tmp_path / "image.xyz"
    odd.write_bytes(b"123")
    message = assert_error(odd, match="unsupported")
    assert all(ext in message for ext in SUPPORTED_EXTENSIONS)


@pytest.mark.parametrize("ext", [".dm4", ".dm3", ".emd", ".ser", ".tif", ".mrc", ".png", ".jpg", ".npy", ".npz"])
def test_random_bytes_raise_gombnet_error(tmp_path, ext):
    rng = np.random.default_rng(14)
    path = tmp_path / f"garbage{ext}"
    path.write_bytes(rng.bytes(4096))
    assert_error(path)


@pytest.mark.parametrize(
    "array, match",
    [
        (np.arange(1000.0), "1-D"),
        (np.ones((2, 2, 40, 40)) + np.arange(40), "4-D"),
        (np.where(np.eye(40, dtype=bool), np.nan, 1.0), "NaN"),
        (np.where(np.eye(40, dtype=bool), np.inf, 1.0), "NaN/inf"),
        (np.full((40, 40), 7.0), "constant"),
        (np.arange(20 * 64, dtype=float).reshape(20, 64), "at least 32 px"),
        (np.ones((40, 40), dtype=complex), "complex"),
    ],
)
def test_bad_arrays(tmp_path, array, match):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_error(path, match=match)


def test_pickled_npy_and_npz_without_image(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_error(path, match="pickle")
    path = tmp_path / "noimage.npz"
    np.savez(path, pixel_size=np.array("1e-11"), line=np.arange(100.0))
    assert_error(path, match="no 2-D or 3-D")


@pytest.mark.parametrize("value", [0.0, -0.1, 100.0, 0.001, float("nan"), float("inf"), "0.1", True])
def test_bad_pixel_size_override(tmp_path, value):
    rng = np.random.default_rng(15)
    path = tmp_path / "ok.npy"
    np.save(path, texture(rng))
    assert_error(path, pixel_size_angstrom=value)
    assert_error(path, default_pixel_size_angstrom=value)


def test_absurd_file_pixel_size(tmp_path):
    rng = np.random.default_rng(16)
    path = tmp_path / "huge.tif"
    write_imagej_tif(path, texture(rng).astype(np.float32), 0.5, "\\u00B5m")  # 5000 Å/px
    assert_error(path, match="plausible range")
    # an override rescues it
    _, px, _ = read_quiet(path, pixel_size_angstrom=0.1)
    assert px == 0.1


def test_bad_frame_arguments(tmp_path):
    rng = np.random.default_rng(17)
    path = tmp_path / "single.tif"
    write_imagej_tif(path, texture(rng).astype(np.float32), 0.01, "nm")
    assert read_quiet(path, frame=0).image.shape == (64, 64)  # a single image is frame 0
    assert_error(path, match="out of range", frame=1)
    assert_error(path, frame="mean")
    assert_error(path, frame=True)
    assert_error(path, frame=1.5)
    assert_error(path, align_frames="yes")


def test_corrupt_copy_of_valid_file(tmp_path):
    rng = np.random.default_rng(18)
    good = tmp_path / "good.tif"
    write_imagej_tif(good, texture(rng).astype(np.float32), 0.01, "nm")
    cut = tmp_path / "cut.tif"
    cut.write_bytes(good.read_bytes()[:2000])
    assert_error(cut)
    velox = tmp_path / "v.emd"
    write_velox(velox, {"HAADF": texture(rng)[..., None]})
    short = tmp_path / "short.emd"
    short.write_bytes(velox.read_bytes()[:3000])
    assert_error(short)
    ser = tmp_path / "s.ser"
    write_ser(ser, texture(rng)[None].astype(np.float32), 1e-11, 1e-11)
    shutil.copy(ser, tmp_path / "t.ser")
    (tmp_path / "t.ser").write_bytes(ser.read_bytes()[:500])
    assert_error(tmp_path / "t.ser")
