"""The ``pairs2d`` reader: 2D images and masks matched by file-name patterns.

PNG, JPEG, BMP, PPM/PGM (also gzipped, as STARE ships them), TIFF and GIF
images; masks as grey levels, palette indices (``encoding = "palette"``) or ``.npy`` arrays, decoded
by the card's label options (grey levels, thresholds for JPEG masks,
multi-rater votes; see :mod:`bench.readers.labels`). Layout options are those
of :mod:`bench.readers.layout`. Each image is one case; cases are grouped
into image flows by ``group`` and ``chunk_size``. Example (WBC)::

    reader = "pairs2d"
    kind = "image-flow"
    [options]
    image = "{set}/{id}.bmp"
    mask = "{set}/{id}.png"
    fields = { set = "Dataset \\d" }
    group = "{set}"
    levels = [0, 128, 255]
    labels = { cytoplasm = 128, nucleus = 255 }
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.readers.cards import Card
from bench.readers.cases import CaseRef, RawCase
from bench.readers.files import read_array2d, read_image2d, read_mask2d, suffix
from bench.readers.layout import PairsOptions, PatternReader, read_masks
from bench.readers.registry import register_reader


@register_reader("pairs2d")
class PairReader(PatternReader):
    """2D image/mask pairs matched by patterns (see the module docstring)."""

    options_model = PairsOptions

    def read_case(self, card: Card, ref: CaseRef, image: bool = True) -> RawCase:
        layout = self.layout(card, ref)
        image_path = Path(ref.files["image"])
        array = read_image2d(image_path)
        channel, encoding = layout.options.mask_channel, layout.options.encoding

        def read_mask(path: Path) -> np.ndarray:
            if suffix(path) == ".npy":
                return read_array2d(path)
            return read_mask2d(path, channel, encoding)

        labels, targets = read_masks(layout, ref, array.shape[:2], read_mask)
        meta = {"image": str(image_path),
                "mask": [str(p) for p in (ref.files.get("mask") or ())] or None}
        if ref.files.get("targets"):
            meta["target_masks"] = {t: [str(p) for p in ps]
                                    for t, ps in ref.files["targets"].items()}
        return RawCase(array, labels, targets, None, None, meta)


__all__ = ["PairReader"]
