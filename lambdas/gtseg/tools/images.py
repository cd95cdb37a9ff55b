"""An image and its mask in the same orientation, whatever the image's EXIF Orientation tag says.

Browsers (and Ground Truth's worker UI, it appears) show a JPEG rotated by its EXIF orientation;
the consolidated mask has either the stored size or the displayed one (the consolidation accepts
both, docs/consolidation.md). A loader that honours the tag would pair a rotated image with an
unrotated mask, one that ignores it the opposite. So the tools write every image upright (the
orientation applied, the tag gone) and turn the mask to match:

* mask of the stored size (and that differs from the displayed size): the mask was painted on the
  stored pixels, it is turned with the image;
* mask of the displayed size: it is upright already;
* both sizes equal (a mirror or 180 degree turn, or a square image): taken as painted on what the
  worker's browser showed, i.e. upright already;
* any other size: the pair does not fit, and the object is refused with both sizes named.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from gtseg.core.images import ImageHeaderError, read_image_info

# EXIF orientation -> the transpose that shows the stored pixels upright (as ImageOps.exif_transpose)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImagePairError(ValueError):
    """The image cannot be read, or its mask does not fit it; the message says which."""


@dataclass(frozen=True)
class Orientation:
    """How an image and the masks painted on it are brought upright."""

    exif: int  # the image's EXIF orientation (1 = upright as stored)
    turn_masks: bool  # the masks are in the stored orientation: turn them with the image

    @property
    def changes_image(self) -> bool:
        return self.exif in _UPRIGHT

    def upright_mask(self, mask: np.ndarray) -> np.ndarray:
        if not self.turn_masks:
            return mask
        return np.asarray(Image.fromarray(mask).transpose(_UPRIGHT[self.exif]))

    def note(self) -> str | None:
        if not self.changes_image:
            return None
        masks = "the mask turned with it" if self.turn_masks else "the mask was upright already"
        return f"EXIF orientation {self.exif} applied: image written upright, {masks}"


def orientation_for(image_bytes: bytes, mask_shape: tuple[int, ...]) -> Orientation:
    """The orientation of an image and of a (H, W) mask painted on it; ImagePairError if they do not fit."""
    try:
        info = read_image_info(image_bytes)
    except ImageHeaderError as exc:
        raise ImagePairError(f"the image is not readable: {exc}") from exc
    stored, shown = (info.width, info.height), info.display_size
    mask_size = (int(mask_shape[1]), int(mask_shape[0]))
    exif = info.orientation if info.orientation in _UPRIGHT else 1
    if mask_size == shown:
        return Orientation(exif, turn_masks=False)
    if mask_size == stored and exif != 1:
        return Orientation(exif, turn_masks=True)
    raise ImagePairError(
        f"the mask is {mask_size[0]}x{mask_size[1]} but the image is {stored[0]}x{stored[1]}"
        + (f" ({shown[0]}x{shown[1]} as shown)" if shown != stored else "")
    )


def upright_image_bytes(image_bytes: bytes, orientation: Orientation) -> bytes:
    """The image as it should be written: unchanged when upright, else turned and re-encoded in
    its own format without the orientation tag (JPEG at quality 95, its ICC profile kept)."""
    if not orientation.changes_image:
        return image_bytes
    with Image.open(io.BytesIO(image_bytes)) as image:
        fmt = image.format or "PNG"
        icc = image.info.get("icc_profile")
        upright = image.transpose(_UPRIGHT[orientation.exif])
        buf = io.BytesIO()
        extra = {"quality": 95} if fmt == "JPEG" else {}
        if icc:
            extra["icc_profile"] = icc
        upright.save(buf, format=fmt, **extra)
        return buf.getvalue()


def upright_rgb(image_bytes: bytes, orientation: Orientation) -> np.ndarray:
    """(H, W, 3) uint8 pixels of the image, upright."""
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            rgb = image.convert("RGB")
            if orientation.changes_image:
                rgb = rgb.transpose(_UPRIGHT[orientation.exif])
            return np.asarray(rgb)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImagePairError(f"the image is not readable: {exc}") from exc


__all__ = ["ImagePairError", "Orientation", "orientation_for", "upright_image_bytes", "upright_rgb"]
