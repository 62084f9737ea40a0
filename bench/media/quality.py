"""Output quality of the media benchmark: mean absolute error against a lossless reference.

The reference for an input at W x H is the full decode of the input (pyvips, sRGB, 8-bit),
resized in one Lanczos3 pass (`resize(..., kernel="lanczos3", gap=0)`: no box pre-shrink, no
shrink-on-load) in float, never quantised or compressed. It is cached as a float32 .npy under
the reference folder and is the same for every tool: a tool's variant is compared with the
reference made at that variant's own dimensions.

MAE = mean over all pixels and the three channels of |variant - reference|, on the 0-255 scale,
with the variant decoded by Pillow (libjpeg-turbo).
"""

import os

os.environ["VIPS_CONCURRENCY"] = "1"
import numpy as np  # noqa: E402
import pyvips  # noqa: E402
from PIL import Image  # noqa: E402


def reference(input_path, width, height, cache_dir):
    os.makedirs(cache_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(input_path))[0]
    ext = os.path.splitext(input_path)[1].lstrip(".")
    cached = os.path.join(cache_dir, f"{stem}-{ext}-{width}x{height}.npy")
    if os.path.exists(cached):
        return np.load(cached)
    image = pyvips.Image.new_from_file(input_path, access="random").colourspace("srgb")
    if image.bands > 3:
        image = image.extract_band(0, n=3)
    resized = image.cast("float").resize(
        width / image.width, vscale=height / image.height, kernel="lanczos3", gap=0.0
    )
    if (resized.width, resized.height) != (width, height):
        raise RuntimeError(
            f"reference for {input_path} came out {resized.width}x{resized.height}, wanted {width}x{height}"
        )
    array = np.ndarray(
        buffer=resized.write_to_memory(), dtype=np.float32, shape=(height, width, 3)
    ).copy()
    np.clip(array, 0.0, 255.0, out=array)
    tmp = cached + ".tmp.npy"
    np.save(tmp, array)
    os.replace(tmp, cached)
    return array


def mae(variant_path, input_path, cache_dir):
    """(MAE, width, height) of one encoded variant."""
    with Image.open(variant_path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width = pixels.shape[:2]
    ref = reference(input_path, width, height, cache_dir)
    return float(np.mean(np.abs(pixels - ref))), width, height
