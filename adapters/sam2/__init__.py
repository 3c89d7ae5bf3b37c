"""SAM 2's video predictor driven with in-memory frames: the ``sam2`` adapter and its parts.

The parts, each with one job (``medsam2`` and later SAM 2 based adapters
reuse them):

- :mod:`bench.adapters.sam2.preprocess`: frames of any dtype to the model's input;
- :mod:`bench.adapters.sam2.prompts`: the ledger's prompts grouped per target and
  frame, checked against the flow (shared with the per-frame SAM adapters);
- :mod:`bench.adapters.sam2.build`: SAM 2 configs, building a predictor from a
  config and a checkpoint, the loaded-model record;
- :mod:`bench.adapters.sam2.predictor`: the predictor subclass with the harness's
  hooks (imports torch and sam2; loaded only when a model is built);
- :mod:`bench.adapters.sam2.session`: one flow's inference state, fed from memory
  through the embedding cache;
- :mod:`bench.adapters.sam2.adapter`: the ``sam2`` adapter, its settings and its
  tracking loop.

Everything but :mod:`~bench.adapters.sam2.predictor` imports without torch, so the
core install can list these models and say what to install.
"""
