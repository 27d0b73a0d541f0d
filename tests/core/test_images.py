"""Loading, validating, saving and colour helpers of keras_style.core.images."""

import numpy as np
import pytest
from PIL import Image

from keras_style.core import images


def _save(tmp_path, name, img, **kwargs):
    path = tmp_path / name
    img.save(path, **kwargs)
    return path


def test_rgb_file_round_trip(tmp_path, photo):
    path = images.save_image(photo, tmp_path / "out.png")
    loaded = images.load_image(path)
    assert loaded.dtype == np.float32 and loaded.shape == photo.shape
    np.testing.assert_array_equal(loaded, images.to_uint8(photo))


def test_grayscale_becomes_three_equal_channels(tmp_path):
    path = _save(tmp_path, "gray.png", Image.fromarray(np.full((5, 7), 80, np.uint8), "L"))
    loaded = images.load_image(path)
    assert loaded.shape == (5, 7, 3)
    assert np.all(loaded == 80)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red-ish, bottom half transparent
    loaded = images.load_image(_save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA")))
    np.testing.assert_array_equal(loaded[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(loaded[3, 0], [255, 255, 255])


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (6, 6), (0, 255, 255, 0))  # pure red in CMYK
    loaded = images.load_image(_save(tmp_path, "c.jpg", cmyk, quality=100))
    assert loaded.shape == (6, 6, 3)
    assert loaded[..., 0].mean() > 200 and loaded[..., 1].mean() < 60


def test_16_bit_png_is_scaled_to_8_bit_range(tmp_path):
    """Every 16-bit value maps proportionally (v * 255 / 65535), not clipped at 255."""
    levels = np.array([0, 200, 1000, 32768, 65535], np.uint16)
    data = np.tile(levels, (3, 1))
    path = _save(tmp_path, "deep.png", Image.fromarray(data))
    loaded = images.load_image(path)
    assert loaded.shape == (3, 5, 3)
    expected = levels.astype(np.float64) * 255.0 / 65535.0  # 0, 0.778, 3.89, 127.5, 255
    for channel in range(3):
        np.testing.assert_allclose(loaded[0, :, channel], expected, atol=1e-3)
    # A dark 16-bit image (every value <= 255) is still 16-bit: 200 is 0.78, not 200.
    dark = _save(tmp_path, "dark.png", Image.fromarray(np.full((2, 2), 200, np.uint16)))
    np.testing.assert_allclose(images.load_image(dark), 200 * 255.0 / 65535.0, atol=1e-3)
    # The same scaling for uint16 arrays.
    array = images.load_image(np.tile(levels[:, None], (1, 3))[None])
    np.testing.assert_allclose(array[0], expected[:, None].repeat(3, 1), atol=1e-3)


def test_exif_rotation_is_honoured(tmp_path):
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = 255  # left half white
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    loaded = images.load_image(_save(tmp_path, "r.jpg", img, exif=exif, quality=100))
    assert loaded.shape == (20, 10, 3)
    assert loaded[:8].mean() > 200 and loaded[12:].mean() < 50  # white half now on top


@pytest.mark.parametrize(
    "content, message",
    [(b"this is not an image", "not a readable image"), (b"", "not a readable image")],
)
def test_non_image_files_are_rejected(tmp_path, content, message):
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        images.load_image(path)


def test_truncated_file_is_rejected(tmp_path, photo):
    path = images.save_image(photo, tmp_path / "x.jpg")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        images.load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        images.load_image(tmp_path / "nope.png")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = _save(tmp_path, "big.png", Image.new("RGB", (300, 200)))
    with pytest.raises(ValueError, match="too large"):
        images.load_image(path, max_pixels=50_000)


def _png_header_only(path, width, height):
    """A PNG that declares width x height RGB pixels but holds no pixel data (a few bytes)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_default_limit_is_144_megapixels(tmp_path):
    """README: gigantic (> 144 Mpx) images raise a ValueError, by default, before decoding."""
    over = _png_header_only(tmp_path / "over.png", 12_000, 12_001)  # 144.012 Mpx
    with pytest.raises(ValueError, match="too large.*144000000"):
        images.load_image(over)
    with pytest.raises(ValueError, match="too large"):
        images.decode_image(over.read_bytes())
    # Exactly 144 Mpx passes the size check (and then fails only as the empty file it is).
    at_limit = _png_header_only(tmp_path / "at.png", 12_000, 12_000)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        images.load_image(at_limit)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.zeros((5, 5, 2), np.uint8), "shape"),
        (np.zeros((2, 5, 5, 3), np.uint8), "shape"),
        (np.zeros((5,), np.uint8), "shape"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (np.full((4, 4, 3), np.inf, np.float32), "NaN or infinite"),
        (np.full((4, 4, 3), 300.0, np.float32), r"\[0, 255\]"),
        (np.full((4, 4, 3), -3.0, np.float64), r"\[0, 255\]"),
        (np.zeros((4, 4, 3), bool), "dtype"),
        (np.array([["a"]]), "dtype"),
    ],
)
def test_bad_arrays_are_rejected(array, message):
    with pytest.raises(ValueError, match=message):
        images.load_image(array)


def test_arrays_of_every_supported_kind():
    base = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    np.testing.assert_array_equal(images.load_image(base), base)
    np.testing.assert_allclose(images.load_image(base.astype(np.uint16) * 257), base, atol=1e-3)
    np.testing.assert_array_equal(images.load_image(base[None].astype(np.float64)), base)
    gray = images.load_image(np.full((3, 3), 9, np.uint8))
    assert gray.shape == (3, 3, 3) and np.all(gray == 9)
    rgba = np.concatenate([base, np.zeros((4, 4, 1), np.uint8)], axis=-1)
    assert np.all(images.load_image(rgba) == 255)  # fully transparent -> white


def test_tensors_and_pil_images_are_accepted(photo):
    import keras

    tensor = keras.ops.convert_to_tensor(photo)
    np.testing.assert_allclose(images.load_image(tensor), photo)
    pil = Image.fromarray(images.to_uint8(photo))
    np.testing.assert_array_equal(images.load_image(pil), images.to_uint8(photo))


def test_save_is_atomic_and_protects_inputs(tmp_path, photo, monkeypatch):
    target = images.save_image(photo, tmp_path / "out.png")
    before = target.read_bytes()
    with pytest.raises(ValueError, match="overwrite the input"):
        images.save_image(photo * 0, target, protect=[target])

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError):
        images.save_image(photo * 0, target)
    assert target.read_bytes() == before  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temp file left


def test_save_rejects_unknown_suffix_and_missing_folder(tmp_path, photo):
    with pytest.raises(ValueError, match="unknown image suffix"):
        images.save_image(photo, tmp_path / "out.gifx")
    with pytest.raises(ValueError, match="does not exist"):
        images.save_image(photo, tmp_path / "missing" / "out.png")


def test_fit_size_and_resize():
    assert images.fit_size((300, 400), long_side=200) == (150, 200)
    assert images.fit_size((300, 400), max_size=1000) == (300, 400)
    assert images.fit_size((300, 400), max_size=100) == (75, 100)
    image = np.full((10, 20, 3), 77.0, np.float32)
    out = images.resize(image, (5, 9))
    assert out.shape == (5, 9, 3) and np.allclose(out, 77.0, atol=1e-3)


def test_transfer_luminance_keeps_content_colours(photo, painting):
    import keras

    stylized = painting[:40, :48]
    mixed = keras.ops.convert_to_numpy(images.transfer_luminance(stylized, photo))
    yuv_mixed = keras.ops.convert_to_numpy(images.rgb_to_yuv(mixed))
    yuv_content = keras.ops.convert_to_numpy(images.rgb_to_yuv(photo))
    yuv_stylized = keras.ops.convert_to_numpy(images.rgb_to_yuv(stylized))
    interior = np.all((mixed > 1) & (mixed < 254), axis=-1)  # ignore clipped pixels
    np.testing.assert_allclose(yuv_mixed[interior][:, 0], yuv_stylized[interior][:, 0], atol=0.5)
    np.testing.assert_allclose(yuv_mixed[interior][:, 1:], yuv_content[interior][:, 1:], atol=0.5)


def test_match_colors_gives_the_references_colour_statistics():
    rng = np.random.default_rng(0)
    image = rng.uniform(60, 160, (30, 40, 3)).astype(np.float32)
    image[..., 1] = 0.5 * image[..., 0] + 40 + rng.normal(0, 10, (30, 40))  # correlated
    reference = np.clip(rng.normal([180, 120, 60], [20, 10, 15], (50, 20, 3)), 0, 255)
    out = images.match_colors(image, [reference])
    assert out.shape == image.shape and out.dtype == np.float32
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), reference.reshape(-1, 3).mean(0), atol=1)
    np.testing.assert_allclose(
        np.cov(out.reshape(-1, 3).T), np.cov(reference.reshape(-1, 3).T), rtol=0.05, atol=2
    )
    # Structure survives: the recolouring is one affine map of the pixels.
    gray = np.repeat(image[..., :1], 3, axis=-1)  # a grey photo: no colour noise blown up
    assert np.isfinite(images.match_colors(gray, [reference])).all()
    assert np.corrcoef(out[..., 0].ravel(), image[..., 0].ravel())[0, 1] > 0.5
    # Weighted blend of references: the zero-weight one is ignored.
    other = np.full((8, 8, 3), 10.0, np.float32)
    np.testing.assert_allclose(
        images.match_colors(image, [reference, other], [1.0, 0.0]), out, atol=1e-3
    )
