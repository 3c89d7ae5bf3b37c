"""MedSAM-2 (Zhu et al. 2024): the ``medsam2`` adapter and its memory.

- :mod:`bench.adapters.medsam2.adapter`: the adapter, its settings, the checkpoint
  to config match and the choice of memory policy;
- :mod:`bench.adapters.medsam2.memory_bank`: the official confidence bank's rules
  as pure torch functions;
- :mod:`bench.adapters.medsam2.predictor`: the bank wired into SAM 2's video
  predictor (imports torch and sam2; loaded only when a model is built);
- :mod:`bench.adapters.medsam2.official_loop`: the official 2D validation loop
  (``memory = "official"`` on image flows; imports torch).

The adapter reuses the SAM 2 machinery of :mod:`bench.adapters.sam2`.
"""
