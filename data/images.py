"""Image files to uint8 pixels as a viewer shows them: the one decoder behind a training folder
(data/image_folder.py), `flaxforge predict`, the server and the Python Predictor (inference/inputs.py).

- EXIF orientation is applied (`PIL.ImageOps.exif_transpose`): a photo taken sideways is upright.
- Pixel values become 8-bit as follows: 16-bit greyscale (`I;16*`, and `I`, which is how Pillow may read a
  16-bit PNG) divided by 257 (65535 -> 255), clipped to [0, 65535] first; float (`F`) read as [0, 1], times 255,
  clipped; an alpha channel or a palette/greyscale/RGB transparency composited over white (a page's
  background); every other mode (CMYK, YCbCr, palettes, bilevel) through Pillow's own conversion.
- An image over `max_pixels` (width x height) is refused from its header, before it is decoded (a
  decompression bomb: a small file that expands to gigabytes). The default is where Pillow itself refuses
  (DecompressionBombError above 2 x PIL.Image.MAX_IMAGE_PIXELS); this check replaces Pillow's, so that the
  message can name the size and the flag that raises the limit.
"""
import threading

import numpy as np
from PIL import Image, ImageOps

from flaxforge.core.errors import UserError

MAX_PIXELS = 178_956_970  # 2 * PIL.Image.MAX_IMAGE_PIXELS (89,478,485): Pillow's DecompressionBombError
_MODES = {"rgb": "RGB", "grey": "L"}  # data.color: Pillow's mode
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_UNGUARDED = threading.Lock()  # held while Pillow's module-wide limit is lifted for one header read


def decode(source, size: tuple[int, int], color: str, *, name: str | None = None, max_pixels: int = MAX_PIXELS,
           raise_with: str = "--max_image_pixels=N") -> np.ndarray:
  """One image file (a path or a binary file object, called `name` in errors) as uint8 [height, width,
  channels] (3 for color "rgb", 1 for "grey"), upright and resized (bilinear) to `size` = (height, width).

  UserError when Pillow cannot read it, or when it has more than `max_pixels` pixels (the message names the
  limit and `raise_with`, the flag that raises it)."""
  name = name or str(source)
  try:
    with _open(source) as image:
      width, height = image.size
      if width * height > max_pixels:
        raise UserError(f"{name}: {width} x {height} = {width * height:,} pixels is over the limit of "
                        f"{max_pixels:,} (a guard against decompression bombs); raise it with {raise_with} if "
                        "you trust the file, or shrink the image")
      image = _eight_bit(ImageOps.exif_transpose(image), _MODES[color])
      array = np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR), np.uint8)
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise UserError(f"{name}: not a readable image ({str(e).split(' <')[0]}); remove it or convert it "
                    "to PNG/JPEG") from None
  return array[..., None] if array.ndim == 2 else array


def _open(source) -> Image.Image:
  """`Image.open` (which reads the header alone) without Pillow's own decompression-bomb check, which would
  refuse a large image before its size can be named; `decode` checks the size itself."""
  with _UNGUARDED:
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
      return Image.open(source)
    finally:
      Image.MAX_IMAGE_PIXELS = limit


def _eight_bit(image: Image.Image, mode: str) -> Image.Image:
  """`image` in `mode` ("RGB" or "L") as the module docstring says."""
  if image.mode in _SIXTEEN_BIT or image.mode == "F":
    values = np.asarray(image, np.float64)
    values = np.clip(values, 0, 65535) / 257 if image.mode != "F" else np.clip(np.nan_to_num(values), 0, 1) * 255
    image = Image.fromarray(np.rint(values).astype(np.uint8), "L")
  if image.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in image.info:
    rgba = image.convert("RGBA")
    image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
  return image.convert(mode)
