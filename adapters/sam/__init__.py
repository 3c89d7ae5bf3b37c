"""SAM and MedSAM per frame (the ``segment-anything`` package): ``sam`` and ``medsam``.

- :mod:`bench.adapters.sam.build`: the SAM ViT architecture at any input size and
  its weights (random or a checkpoint), memoised per process;
- :mod:`bench.adapters.sam.inputs`: frames to 8-bit RGB, mask prompts to SAM's
  low-resolution logits, boxes to MedSAM's input coordinates;
- :mod:`bench.adapters.sam.adapter`: the two adapters and their settings.
"""
