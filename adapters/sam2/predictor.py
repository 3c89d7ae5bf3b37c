"""``BenchVideoPredictor``: SAM 2's video predictor with the harness's two hooks.

1. Frame features come from the inference state's feature provider
   (:func:`bench.adapters.sam2.session.new_inference_state`, backed by the embedding
   cache) instead of re-running the image encoder.
2. The IoU head's prediction and the object score of every decoded frame are
   recorded in the per-object output dict (``INFO_KEY``). ``scores`` of the
   adapters are read from there: the IoU prediction of the mask SAM 2 kept
   (the largest of the three when it outputs several, which is the one it
   keeps); ``None`` for frames whose mask came straight from a mask prompt
   (SAM 2 then skips the decoder and reports a dummy 1.0).

Nothing else changes: the masks are exactly SAM 2's (tested against the stock
class). Subclasses add their own hooks (MedSAM-2's memory bank:
:mod:`bench.adapters.medsam2.predictor`).

This module imports torch and sam2; hydra imports it when it builds a model
(:mod:`bench.adapters.sam2.build`), never the core install.
"""

from __future__ import annotations

from typing import Any

from bench.adapters.sam2.session import INFO_KEY, PROVIDER_KEY
from sam2.sam2_video_predictor import SAM2VideoPredictor


class BenchVideoPredictor(SAM2VideoPredictor):
    """SAM 2's video predictor with features from a provider and per-frame IoU records."""

    def _get_image_feature(self, inference_state, frame_idx, batch_size):
        provider = inference_state.get(PROVIDER_KEY)
        if provider is None:
            return super()._get_image_feature(inference_state, frame_idx, batch_size)
        image, backbone_out = provider(frame_idx)
        expanded = {
            "backbone_fpn": [f.expand(batch_size, -1, -1, -1)
                             for f in backbone_out["backbone_fpn"]],
            "vision_pos_enc": [p.expand(batch_size, -1, -1, -1)
                               for p in backbone_out["vision_pos_enc"]],
        }
        features = self._prepare_backbone_features(expanded)
        return (image.expand(batch_size, -1, -1, -1),) + features

    def _track_step(self, frame_idx, is_init_cond_frame, current_vision_feats,
                    current_vision_pos_embeds, feat_sizes, point_inputs, mask_inputs,
                    output_dict, num_frames, track_in_reverse, prev_sam_mask_logits):
        result = super()._track_step(
            frame_idx, is_init_cond_frame, current_vision_feats,
            current_vision_pos_embeds, feat_sizes, point_inputs, mask_inputs,
            output_dict, num_frames, track_in_reverse, prev_sam_mask_logits)
        _, sam_outputs, _, _ = result
        ious, object_score_logits = sam_outputs[2], sam_outputs[6]
        mask_as_output = mask_inputs is not None and self.use_mask_input_as_output_without_sam
        best = float(ious[0].max())
        info: dict[str, Any] = {"iou": None if mask_as_output else best,
                                "object_score": float(object_score_logits[0, 0])}
        output_dict.setdefault(INFO_KEY, {})[frame_idx] = info
        return result
