"""Small builders shared by the input-import tests: image bytes, bad files, zips and specs."""
import io
import struct
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from inputs.importing import InputSpec
from tests.conftest import box_mask, photo, png_bytes, stored_files

W, H = 64, 48
BOX = (16, 12, 40, 30)  # the white box of box_mask(): x 16..39, y 12..29


def source_png(seed: int = 0, width: int = W, height: int = H) -> bytes:
    return png_bytes(photo(width, height, seed))


def mask_png(width: int = W, height: int = H, box=BOX) -> bytes:
    return png_bytes(box_mask(width, height, box))


def random_bytes(size: int = 2000, seed: int = 1) -> bytes:
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert not data.startswith(b"\x89PNG")
    return data


def truncated_png(seed: int = 0) -> bytes:
    data = source_png(seed)
    return data[: len(data) // 2]


def gradient_mask(width: int = W, height: int = H) -> bytes:
    """A soft mask: a horizontal ramp from black to white, mostly grey."""
    ramp = np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))
    return png_bytes(Image.fromarray(ramp, "L"))


def solid_mask(value: int, width: int = W, height: int = H) -> bytes:
    return png_bytes(Image.new("L", (width, height), value))


def rgba_mask_with_transparency() -> bytes:
    """The box mask as RGBA, its top-left corner transparent."""
    mask = box_mask().convert("RGBA")
    pixels = np.asarray(mask).copy()
    pixels[0:4, 0:4, 3] = 0
    return png_bytes(Image.fromarray(pixels, "RGBA"))


def antialiased_mask() -> tuple[bytes, np.ndarray]:
    """The box mask with a few grey edge pixels (< 1 %), and the {0, 255} mask it must become."""
    pixels = np.asarray(box_mask()).copy()
    greys = [((11, 20), 100), ((11, 21), 60), ((12, 15), 127), ((30, 20), 128), ((29, 40), 200), ((20, 40), 30),
             ((20, 15), 238), ((25, 39), 17)]
    expected = pixels.copy()
    for (y, x), value in greys:
        pixels[y, x] = value
        expected[y, x] = 255 if value >= 128 else 0
    assert ((pixels > 16) & (pixels < 239)).mean() < 0.01
    return png_bytes(Image.fromarray(pixels, "L")), expected


@lru_cache(maxsize=None)
def huge_png(width: int, height: int) -> bytes:
    """A real, valid 1-bit PNG of WIDTHxHEIGHT, all black: a few KB that would decode to gigabytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_block = 500
    parts = [
        compressor.compress(row * min(rows_per_block, height - start)) for start in range(0, height, rows_per_block)
    ]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def zip_bytes(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            archive.writestr(info, data)
    return buffer.getvalue()


def forge_declared_size(data: bytes, name: str, file_size: int) -> bytes:
    """The zip `data` with entry `name` claiming to unpack to `file_size` bytes, in its local header
    and in the central directory, whatever it really unpacks to (the CRC is left as it was)."""
    forged = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        local = archive.getinfo(name).header_offset
    assert forged[local:local + 4] == b"PK\x03\x04"
    struct.pack_into("<I", forged, local + 22, file_size)
    end = forged.rindex(b"PK\x05\x06")
    count, _, start = struct.unpack_from("<HII", forged, end + 10)
    for _ in range(count):
        assert forged[start:start + 4] == b"PK\x01\x02"
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", forged, start + 28)
        if forged[start + 46:start + 46 + name_length].decode() == name:
            struct.pack_into("<I", forged, start + 24, file_size)
        start += 46 + name_length + extra_length + comment_length
    with zipfile.ZipFile(io.BytesIO(bytes(forged))) as archive:
        assert archive.getinfo(name).file_size == file_size
    return bytes(forged)


def stored_folders() -> list[str]:
    """Every folder in the media storage (a local filesystem in the tests), its root left out."""
    from django.conf import settings

    root = Path(settings.MEDIA_ROOT)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir())


def empty_folders() -> list[str]:
    from django.conf import settings

    root = Path(settings.MEDIA_ROOT)
    return [name for name in stored_folders() if not any((root / name).iterdir())]


def fill_spec(name: str = "a.png", seed: int = 0, prompt: str = "a red kite", **overrides) -> InputSpec:
    """A good image_fill spec (a source, its box mask and a prompt), with fields overridden."""
    fields = dict(
        entry=name, task="image_fill", source=source_png(seed), source_name=name,
        mask=mask_png(), mask_name=name.rsplit(".", 1)[0] + "_mask.png", prompt=prompt,
    )
    fields.update(overrides)
    return InputSpec(**fields)


def problem_lines(problems) -> list[str]:
    return [f"{p.entry}: {p.problem}" for p in problems]


def assert_nothing_stored() -> None:
    from inputs.models import Input, Tag

    assert Input.objects.count() == 0
    assert Tag.objects.count() == 0
    assert stored_files() == []
    assert stored_folders() == []


def stored_image(field_file) -> Image.Image:
    """Decode a stored file of an Input (source, mask, thumbnail) through the storage API."""
    with field_file.storage.open(field_file.name, "rb") as handle:
        image = Image.open(io.BytesIO(handle.read()))
        image.load()
    return image
