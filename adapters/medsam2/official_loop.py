"""The official MedSAM-2 2D validation loop as its own code path (``memory = "official"``).

What ``func_2d/function.py::validation_sam`` of the official code does
(MedicineToken/Medical-SAM2; the spec followed is the project's notes on it),
run on one target of one image flow:

- the flow's images are one **stream**, processed in frame order in batches
  of ``B`` (``batch``, default 1 as the official ``cfg.py``; its README's
  REFUGE command uses 4). The official code keeps one bank for its whole
  test set; here the unit is a **flow** (one bank per flow and target), so
  the two agree when a flow is the whole test split (``official-refuge``
  groups it so);
- the first batch (empty bank) is decoded from the raw backbone feature (the
  official code adds zeros; no ``no_mem_embed``); every later batch goes
  through memory attention on ``B`` bank entries per image, drawn with
  replacement by softmax(cosine) (:mod:`bench.adapters.medsam2.memory_bank`; no
  temporal encoding, no object pointers), prompted images included;
- prompts go straight to the prompt encoder: a click gets SAM's padding
  point (as there), an unprompted image gets **no** sparse token; boxes (an
  extension: the official 2D loop only clicks) go in as SAM boxes; mask
  prompts are refused;
- the decoder runs with ``multimask_output=False`` (SAM 2's dynamic
  stability choice in eval mode) and **no object-score gating**;
- the memory encoder sees the **post-attention** feature and the **soft**
  mask ``sigmoid(logits) * 20 - 10`` of the ungated decoder output
  upsampled bilinearly to the input size; memories are stored in bf16;
- bank entries: memory, its positional encoding, the IoU prediction of the
  returned mask, and the post-attention image embedding flattened
  ``(C, H, W)``. While the bank holds fewer than ``size`` entries at the
  start of a batch, every image of the batch is appended; otherwise each
  image in turn is offered under the diversity / soft-confidence rule
  (:func:`~bench.adapters.medsam2.memory_bank.bank_insert`).

Known differences from the official run (numerics only): similarities and
draws in fp32 on a seeded CPU generator (official: bf16 under autocast, the
unseeded CUDA generator); each image of a batch is decoded on its own (the
decoder has no cross-image interaction, so only batch numerics differ).
Verified against an independent port in ``tests/test_official_loop.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from bench.adapters.medsam2.memory_bank import (
    BANK_SIZE,
    REPLACE_MARGIN,
    BankEntry,
    bank_insert,
    draw_entries,
    flatten_current,
    gather_memory,
    pickup_weights,
)


@dataclass(frozen=True)
class LoopPrompt:
    """One image's prompt in model input pixels (``S x S``): clicks ``(x, y)`` and/or a box."""

    points: torch.Tensor | None = None  # (n, 2) float
    labels: torch.Tensor | None = None  # (n,) int
    box: torch.Tensor | None = None  # (4,) float, x0 y0 x1 y1


@dataclass
class LoopResult:
    """Per frame: low-res logits ``(h, w)`` and the IoU prediction; the final bank."""

    logits: list[torch.Tensor] = field(default_factory=list)
    ious: list[float] = field(default_factory=list)
    bank: list[BankEntry] = field(default_factory=list)
    picks: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)


def run_stream(model: torch.nn.Module, n_frames: int,
               features: Callable[[int], dict[str, list[torch.Tensor]]],
               prompts: dict[int, LoopPrompt], *, batch: int = 1, size: int = BANK_SIZE,
               margin: float = REPLACE_MARGIN, flatten_order: str = "official",
               generator: torch.Generator | None = None) -> LoopResult:
    """Run the official 2D loop over frames ``0 .. n_frames - 1`` of one target.

    ``features(i)`` gives frame ``i``'s ``backbone_out`` as
    ``SAM2Base.forward_image`` returns it (batch 1); ``prompts`` maps frame
    indices to their prompt. Returns the decoder's logits per frame.
    """
    result = LoopResult()
    for start in range(0, n_frames, batch):
        frames = list(range(start, min(start + batch, n_frames)))
        _run_batch(model, frames, features, prompts, result, size, margin, flatten_order,
                   generator)
    return result


def _run_batch(model, frames, features, prompts, result, size, margin, flatten_order,
               generator) -> None:
    outs = [features(i) for i in frames]
    merged = {key: [torch.cat(levels, dim=0) for levels in zip(*(o[key] for o in outs),
                                                                 strict=True)]
              for key in ("backbone_fpn", "vision_pos_enc")}
    _, feats, pos, sizes = model._prepare_backbone_features(merged)
    feats = list(feats)
    b = len(frames)
    if result.bank:
        current = flatten_current(feats[-1], flatten_order)
        weights = pickup_weights(torch.stack([e.embedding for e in result.bank]), current)
        # The official code draws B entries per image (num_samples = batch size).
        indices = draw_entries(weights, b, generator)
        result.picks.extend((f, tuple(row)) for f, row in zip(frames, indices.tolist(),
                                                              strict=True))
        memory, memory_pos = gather_memory(result.bank, indices)
        feats[-1] = model.memory_attention(
            curr=[feats[-1]], curr_pos=[pos[-1]],
            memory=memory.to(feats[-1].device, feats[-1].dtype),
            memory_pos=memory_pos.to(feats[-1].device, feats[-1].dtype), num_obj_ptr_tokens=0)
    maps = [f.permute(1, 2, 0).reshape(b, f.shape[2], h, w)
            for f, (h, w) in zip(feats, sizes, strict=True)]
    lows, ious, objs = [], [], []
    for k, frame in enumerate(frames):
        low, iou, obj = _decode(model, [m[k:k + 1] for m in maps], prompts.get(frame))
        lows.append(low)
        ious.append(iou)
        objs.append(obj)
    low = torch.cat(lows, dim=0)
    high = F.interpolate(low.float(), size=(model.image_size, model.image_size),
                         mode="bilinear", align_corners=False)
    memories, mem_pos = model._encode_new_memory(feats, sizes, high, torch.cat(objs, dim=0),
                                                 is_mask_from_pts=False)
    entries = [BankEntry(memory=memories[k:k + 1].detach().to(torch.bfloat16),
                         pos=mem_pos[-1][k:k + 1].detach().to(torch.bfloat16),
                         confidence=float(ious[k]),
                         embedding=maps[-1][k].reshape(-1).detach().float(), frame=frame)
               for k, frame in enumerate(frames)]
    if len(result.bank) < size:
        result.bank.extend(entries)  # the official fill check is per batch
    else:
        for entry in entries:
            result.bank, _ = bank_insert(result.bank, entry, len(result.bank), margin)
    for k in range(b):
        result.logits.append(low[k, 0].float())
        result.ious.append(float(ious[k]))


def _decode(model, maps: Sequence[torch.Tensor], prompt: LoopPrompt | None):
    """One image through the prompt encoder and the single-mask decoder, ungated."""
    points = box = None
    if prompt is not None and prompt.points is not None:
        points = (prompt.points[None].float().to(maps[-1].device),
                  prompt.labels[None].int().to(maps[-1].device))
    if prompt is not None and prompt.box is not None:
        box = prompt.box.reshape(1, 4).float().to(maps[-1].device)
    sparse, dense = model.sam_prompt_encoder(points=points, boxes=box, masks=None)
    low, iou, _, obj = model.sam_mask_decoder(
        image_embeddings=maps[-1], image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
        multimask_output=False, repeat_image=False, high_res_features=list(maps[:-1]))
    return low, iou[0, 0], obj
