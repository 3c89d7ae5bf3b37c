"""``BankVideoPredictor``: the harness's SAM 2 predictor plus MedSAM-2's confidence bank.

The bank (:class:`~bench.adapters.medsam2.memory_bank.ConfidenceBank`) is active
only for objects whose output dict holds one under ``BANK_KEY`` (put there by
the ``medsam2`` adapter for ``memory = "confidence"``); any other object runs
exactly as in :class:`~bench.adapters.sam2.predictor.BenchVideoPredictor` (tested:
``memory = "fifo"`` equals ``sam2``). Three hooks wire the bank in:

1. every decoded frame records its bank entry's confidence (the IoU head's
   best prediction) and its image embedding after memory conditioning, in
   ``(C, H, W)`` order (the official entry embedding);
2. every memory-encoded frame is offered to the bank; prompted frames, which
   SAM 2 encodes before propagation, are offered first, in frame order
   (:meth:`BankVideoPredictor.propagate_in_video_preflight`);
3. memory attention of a tracked frame sees the bank's drawn entries instead
   of SAM 2's FIFO memory (and, with ``WITH_PROMPTS_KEY``, the prompted
   frames' memories beside them).

The deviations of this wiring from the official 2D loop are listed in
:mod:`bench.adapters.medsam2.adapter`. This module imports torch and sam2; hydra
imports it when it builds a ``medsam2`` model.
"""

from __future__ import annotations

from typing import Any

import torch
from bench.adapters.medsam2.memory_bank import BankEntry, ConfidenceBank
from bench.adapters.sam2.predictor import BenchVideoPredictor
from bench.adapters.sam2.session import INFO_KEY
from sam2.modeling.sam2_utils import select_closest_cond_frames

# Keys the ``medsam2`` adapter adds to a target's per-object output dict.
BANK_KEY = "bench_confidence_bank"
WITH_PROMPTS_KEY = "bench_bank_with_prompts"


class BankVideoPredictor(BenchVideoPredictor):
    """SAM 2's video predictor whose memory may be MedSAM-2's confidence bank."""

    def _track_step(self, frame_idx, is_init_cond_frame, current_vision_feats,
                    current_vision_pos_embeds, feat_sizes, point_inputs, mask_inputs,
                    output_dict, num_frames, track_in_reverse, prev_sam_mask_logits):
        result = super()._track_step(
            frame_idx, is_init_cond_frame, current_vision_feats,
            current_vision_pos_embeds, feat_sizes, point_inputs, mask_inputs,
            output_dict, num_frames, track_in_reverse, prev_sam_mask_logits)
        if BANK_KEY in output_dict:
            _, sam_outputs, _, pix_feat = result
            info = output_dict[INFO_KEY][frame_idx]
            # The IoU head's best prediction, also for a mask prompt (SAM 2's dummy 1.0).
            info["bank_confidence"] = float(sam_outputs[2][0].max())
            # Official entry embedding: the post-attention image embedding, (C, H, W) order.
            info["embedding"] = pix_feat[0].reshape(-1).detach().float()
        return result

    def track_step(self, frame_idx, is_init_cond_frame, current_vision_feats,
                   current_vision_pos_embeds, feat_sizes, point_inputs, mask_inputs,
                   output_dict, num_frames, track_in_reverse=False, run_mem_encoder=True,
                   prev_sam_mask_logits=None):
        out = super().track_step(
            frame_idx, is_init_cond_frame, current_vision_feats,
            current_vision_pos_embeds, feat_sizes, point_inputs, mask_inputs,
            output_dict, num_frames, track_in_reverse, run_mem_encoder,
            prev_sam_mask_logits)
        bank = output_dict.get(BANK_KEY)
        if bank is not None and out["maskmem_features"] is not None:
            _offer(bank, output_dict, frame_idx, out["maskmem_features"], out["maskmem_pos_enc"])
        return out

    def propagate_in_video_preflight(self, inference_state):
        super().propagate_in_video_preflight(inference_state)
        # Prompted frames get their memory here; they enter the bank first, in frame order.
        for output_dict in inference_state["output_dict_per_obj"].values():
            bank = output_dict.get(BANK_KEY)
            if bank is None:
                continue
            seeded = {entry.frame for entry in bank.entries} | set(bank.seeded)
            for frame_idx in sorted(output_dict["cond_frame_outputs"]):
                if frame_idx not in seeded:
                    out = output_dict["cond_frame_outputs"][frame_idx]
                    _offer(bank, output_dict, frame_idx, out["maskmem_features"],
                           out["maskmem_pos_enc"])
                    bank.seeded.append(frame_idx)

    def _prepare_memory_conditioned_features(self, frame_idx, is_init_cond_frame,
                                             current_vision_feats, current_vision_pos_embeds,
                                             feat_sizes, output_dict, num_frames,
                                             track_in_reverse=False):
        bank = output_dict.get(BANK_KEY)
        if bank is None or is_init_cond_frame or self.num_maskmem == 0:
            return super()._prepare_memory_conditioned_features(
                frame_idx, is_init_cond_frame, current_vision_feats,
                current_vision_pos_embeds, feat_sizes, output_dict, num_frames,
                track_in_reverse)
        current = current_vision_feats[-1]
        batch, channels = current.size(1), self.hidden_dim
        height, width = feat_sizes[-1]
        if not bank.entries:
            # The official code adds nothing and skips memory attention on an empty bank.
            return current.permute(1, 2, 0).view(batch, channels, height, width)
        memory, memory_pos = bank.pick(current, frame_idx)
        memory = memory.to(current.device, current.dtype)
        memory_pos = memory_pos.to(current.device, current.dtype)
        if output_dict.get(WITH_PROMPTS_KEY):
            memory, memory_pos = self._with_prompts(frame_idx, output_dict, memory, memory_pos,
                                                    current, batch)
        fused = self.memory_attention(
            curr=current_vision_feats, curr_pos=current_vision_pos_embeds,
            memory=memory, memory_pos=memory_pos, num_obj_ptr_tokens=0)
        return fused.permute(1, 2, 0).view(batch, channels, height, width)

    def _with_prompts(self, frame_idx: int, output_dict: dict, memory: torch.Tensor,
                      memory_pos: torch.Tensor, current: torch.Tensor,
                      batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper variant: the prompted templates' memories beside the bank's draws.

        They stay in memory as SAM 2 keeps its conditioning frames (temporal
        position 0), placed before the drawn entries.
        """
        selected, _ = select_closest_cond_frames(
            frame_idx, output_dict["cond_frame_outputs"], self.max_cond_frames_in_attn)
        tokens, positions = [], []
        for out in selected.values():
            feats = out["maskmem_features"].to(current.device, current.dtype)
            tokens.append(feats.flatten(2).permute(2, 0, 1).expand(-1, batch, -1))
            enc = out["maskmem_pos_enc"][-1].to(current.device, current.dtype)
            enc = enc.flatten(2).permute(2, 0, 1) + self.maskmem_tpos_enc[self.num_maskmem - 1]
            positions.append(enc.expand(-1, batch, -1))
        return torch.cat([*tokens, memory], dim=0), torch.cat([*positions, memory_pos], dim=0)


def _offer(bank: ConfidenceBank, output_dict: dict[str, Any], frame_idx: int,
           maskmem_features: torch.Tensor, maskmem_pos_enc: list[torch.Tensor]) -> None:
    """Offer one frame's memory to the bank, with the embedding its decoding recorded."""
    info = output_dict.get(INFO_KEY, {}).get(frame_idx, {})
    embedding = info.pop("embedding", None)
    if embedding is None:
        raise RuntimeError(f"confidence bank: no image embedding recorded for frame {frame_idx}")
    bank.add(BankEntry(
        memory=maskmem_features.detach().to(torch.bfloat16),
        pos=maskmem_pos_enc[-1].detach(),
        confidence=float(info["bank_confidence"]),
        embedding=embedding,
        frame=int(frame_idx),
    ))
