"""Prepares the media benchmark's inputs once, from a real photograph.

Source: Debian's mate-backgrounds ships Elephants_5640x3172.jpg, a photograph taken with a
Sony DSC-RX100M4. From it (centre crop to the target aspect ratio, Lanczos3 resize):

  photo-24mp.jpg  6000x4000, JPEG quality 92, 4:2:0, no metadata
  photo-12mp.jpg  4000x3000, JPEG quality 92, 4:2:0, no metadata
  photo-12mp.png  4000x3000, RGB 8-bit PNG of the same pixels as photo-12mp.jpg before encoding
  photo-24mp-progressive.jpg  6000x4000, the pixels of photo-24mp.jpg before encoding, as a
                  progressive JPEG (quality 92, 4:2:0, libjpeg's default scan script)
  photo-12mp-q80.webp  4000x3000, lossy WebP at libwebp quality 80 (libvips' webpsave)
  photo-3mp-palette.png  2000x1500, an indexed PNG of 256 colours (Pillow's median-cut
                  quantizer, no dithering), as a palette-reduced photo is usually made

Files that already exist are kept (delete the folder to make them again).
Usage: python prepare.py OUT_DIR
"""

import os
import sys

os.environ.setdefault("VIPS_CONCURRENCY", "1")
import pyvips  # noqa: E402

SOURCE = "/usr/share/backgrounds/mate/abstract/Elephants_5640x3172.jpg"


def crop_resize(image, width, height):
    """Centre-crops `image` to width:height, then resizes it to exactly width x height."""
    if image.width * height > image.height * width:
        crop_w, crop_h = round(image.height * width / height), image.height
    else:
        crop_w, crop_h = image.width, round(image.width * height / width)
    left = (image.width - crop_w) // 2
    top = (image.height - crop_h) // 2
    cropped = image.crop(left, top, crop_w, crop_h)
    return cropped.resize(width / crop_w, vscale=height / crop_h, kernel="lanczos3")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    if not os.path.exists(SOURCE):
        sys.exit(f"prepare: {SOURCE} is missing (apt-get install mate-backgrounds)")
    source = pyvips.Image.new_from_file(SOURCE, access="random").colourspace("srgb")
    if source.bands > 3:
        source = source.extract_band(0, n=3)

    jobs = [
        ("photo-24mp.jpg", 6000, 4000),
        ("photo-12mp.jpg", 4000, 3000),
        ("photo-12mp.png", 4000, 3000),
        ("photo-24mp-progressive.jpg", 6000, 4000),
        ("photo-12mp-q80.webp", 4000, 3000),
        ("photo-3mp-palette.png", 2000, 1500),
    ]
    for name, width, height in jobs:
        path = os.path.join(out, name)
        if os.path.exists(path):
            continue
        image = crop_resize(source, width, height).cast("uchar").copy_memory()
        tmp = path + ".tmp" + os.path.splitext(name)[1]
        if name.endswith(".jpg"):
            image.jpegsave(
                tmp, Q=92, subsample_mode="on", strip=True, optimize_coding=True,
                interlace="progressive" in name,
            )
        elif name.endswith(".webp"):
            image.webpsave(tmp, Q=80, strip=True)
        elif "palette" in name:
            from PIL import Image

            pixels = Image.frombytes("RGB", (width, height), image.write_to_memory())
            indexed = pixels.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            indexed.save(tmp, format="PNG", optimize=True)
        else:
            image.pngsave(tmp, compression=6, strip=True)
        os.replace(tmp, path)
        print(f"prepare: wrote {path} ({width}x{height}, {os.path.getsize(path)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
