"""MedSAM-2's confidence memory bank and weighted pick-up, as the official 2D code does them.

Pure torch functions (plus a thin stateful holder, :class:`ConfidenceBank`)
so that the rules can be tested on hand-made tensors. What the official
repository (MedicineToken/Medical-SAM2, ``func_2d/function.py``,
``validation_sam``) does, and therefore what is implemented here:

Bank entry
    ``(memory features, memory positional encoding, IoU-head confidence,
    post-memory-attention image embedding)``. The features are the memory
    encoder's output for the frame's prediction (stored in bf16, as the
    official code and SAM 2 store them); the embedding is the frame's image
    embedding after memory conditioning, flattened in ``(C, H, W)`` order.

Insertion (:func:`bank_insert`)
    While the bank holds fewer than 16 entries every new entry is appended.
    When full, with ``m`` the new memory features and ``M_i`` the members'
    (all flattened, L2-normalised; cosine similarity):
    ``j`` = the member least similar to ``m``; ``l`` = the member most similar
    to ``j`` (other than ``j``). ``m`` replaces ``l`` if
    ``cos(M_j, m) < cos(M_j, M_l)`` (diversity) and
    ``conf(m) > conf(l) - 0.1`` (confidence, soft). The official code removes
    ``l`` and appends ``m`` at the end, so entry order (which matters for the
    draws) follows that. Ties in argmin/argmax go to the lowest index, as
    ``torch.argmin``/``torch.argmax`` do.

Weighted pick-up (:func:`pickup_weights`, :func:`draw_entries`)
    weights = softmax over members of cos(member embedding, current frame's
    backbone feature before memory attention); ``B`` entries are drawn with
    replacement (``torch.multinomial``; the official ``B`` is the data-loader
    batch size: 1 by default in its ``cfg.py``, 4 in its README's REFUGE
    command). Their memory features (with their positional encodings, no
    temporal encoding, no object pointers) are what memory attention sees.

Known bug, kept selectable (``flatten_order``)
    The official code flattens the current feature from SAM 2's ``(HW, B, C)``
    layout as ``(HW, C)`` (position-major) but the bank embeddings as
    ``(C, H, W)`` (channel-major), so the cosine compares mismatched
    coordinates. ``"official"`` reproduces this; ``"aligned"`` flattens the
    current feature channel-major too.

Numerics: similarities are computed in float32 from the stored values (the
official code computes them in bf16 on the GPU), and draws use a CPU
``torch.Generator`` so that they depend on the seed only, not on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

BANK_SIZE = 16
"""Official bank size (``-memory_bank_size`` default, hard-coded 16 in validation)."""
REPLACE_MARGIN = 0.1
"""Official soft confidence margin: a new entry may be up to 0.1 less confident."""
FLATTEN_ORDERS = ("official", "aligned")


@dataclass(frozen=True)
class BankEntry:
    """One memory of the bank.

    Attributes
    ----------
    memory : Tensor, shape (1, Cm, h, w)
        Memory-encoder features of the frame and its predicted mask.
    pos : Tensor, shape (1, Cm, h, w)
        Their positional encoding.
    confidence : float
        IoU-head prediction for the mask that was encoded.
    embedding : Tensor, shape (D,)
        Post-memory-attention image embedding, flattened ``(C, H, W)``.
    frame : int
        Index of the frame it came from (bookkeeping only).
    """

    memory: torch.Tensor
    pos: torch.Tensor
    confidence: float
    embedding: torch.Tensor
    frame: int = -1


@dataclass(frozen=True)
class BankDecision:
    """What :func:`bank_insert` did and why.

    ``action`` is ``"append"`` (bank not full), ``"replace"`` (entry
    ``replaced`` of the old bank removed), ``"keep-diversity"`` (the new entry
    is not more distinct from ``j`` than ``l`` is) or ``"keep-confidence"``
    (diverse enough but not confident enough). ``least_similar`` is ``j``;
    ``sim_new`` = cos(M_j, m) and ``sim_member`` = cos(M_j, M_l).
    """

    action: str
    replaced: int | None = None
    least_similar: int | None = None
    sim_new: float | None = None
    sim_member: float | None = None


def replacement_candidate(
    members: torch.Tensor, new: torch.Tensor
) -> tuple[int, int, float, float]:
    """The diversity rule's ``j`` and ``l`` and the two similarities it compares.

    Parameters
    ----------
    members : Tensor, shape (N, D)
        Flattened memory features of the bank members.
    new : Tensor, shape (D,)
        Flattened memory features of the candidate.

    Returns
    -------
    j, l, cos(M_j, m), cos(M_j, M_l)
    """
    if members.ndim != 2 or new.ndim != 1 or members.shape[1] != new.shape[0]:
        raise ValueError(f"members (N, D) and new (D,) expected, got {tuple(members.shape)} "
                         f"and {tuple(new.shape)}")
    bank = F.normalize(members.float(), p=2, dim=1)
    cand = F.normalize(new.float(), p=2, dim=0)
    within = bank @ bank.T
    within.fill_diagonal_(float("-inf"))
    to_new = bank @ cand
    j = int(torch.argmin(to_new))
    l = int(torch.argmax(within[j]))  # noqa: E741 - the name used by DESIGN and the paper
    return j, l, float(to_new[j]), float(within[j, l])


def bank_insert(
    bank: Sequence[BankEntry],
    entry: BankEntry,
    size: int = BANK_SIZE,
    margin: float = REPLACE_MARGIN,
) -> tuple[list[BankEntry], BankDecision]:
    """Offer ``entry`` to the bank under the official rule; returns a new list.

    The input sequence is not modified.
    """
    if size < 1:
        raise ValueError(f"bank size must be at least 1, got {size}")
    if len(bank) < size:
        return [*bank, entry], BankDecision("append")
    members = torch.stack([e.memory.reshape(-1) for e in bank])
    j, l, sim_new, sim_member = replacement_candidate(members, entry.memory.reshape(-1))  # noqa: E741
    if not sim_new < sim_member:
        return list(bank), BankDecision("keep-diversity", None, j, sim_new, sim_member)
    if not entry.confidence > bank[l].confidence - margin:
        return list(bank), BankDecision("keep-confidence", None, j, sim_new, sim_member)
    kept = [e for i, e in enumerate(bank) if i != l]
    return [*kept, entry], BankDecision("replace", l, j, sim_new, sim_member)


def flatten_current(features: torch.Tensor, order: str = "official") -> torch.Tensor:
    """Flatten the current backbone feature for the pick-up similarity.

    Parameters
    ----------
    features : Tensor, shape (HW, B, C)
        SAM 2's flattened top-level backbone feature (before memory attention).
    order : {"official", "aligned"}
        ``official``: ``(HW, C)`` position-major, as the official code does
        (mismatched with the embeddings' ``(C, H, W)``); ``aligned``:
        channel-major, matching the embeddings.

    Returns
    -------
    Tensor, shape (B, HW * C)
    """
    if features.ndim != 3:
        raise ValueError(f"features: expected (HW, B, C), got {tuple(features.shape)}")
    if order == "official":
        return features.permute(1, 0, 2).reshape(features.shape[1], -1)
    if order == "aligned":
        return features.permute(1, 2, 0).reshape(features.shape[1], -1)
    raise ValueError(f"flatten_order: expected one of {FLATTEN_ORDERS}, got {order!r}")


def pickup_weights(embeddings: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Softmax over bank members of their cosine similarity to the current feature.

    Parameters
    ----------
    embeddings : Tensor, shape (N, D)
    current : Tensor, shape (B, D)

    Returns
    -------
    Tensor, shape (B, N)
        Each row sums to 1.
    """
    bank = F.normalize(embeddings.float(), p=2, dim=1)
    cur = F.normalize(current.float(), p=2, dim=1)
    return torch.softmax(cur @ bank.T, dim=1)


def draw_entries(
    weights: torch.Tensor, draws: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Draw ``draws`` member indices per row, with replacement, by ``weights``.

    Returns
    -------
    LongTensor, shape (B, draws)
    """
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    return torch.multinomial(weights.float().cpu(), draws, replacement=True, generator=generator)


def gather_memory(
    bank: Sequence[BankEntry], indices: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Memory tokens for memory attention from the drawn entries.

    Row ``b`` gets the entries ``indices[b, 0], indices[b, 1], ...`` in draw
    order, each as ``h * w`` tokens (the official layout).

    Returns
    -------
    memory, pos : Tensor, shape (draws * h * w, B, Cm)
    """
    rows_memory, rows_pos = [], []
    for row in indices.tolist():
        rows_memory.append(torch.cat([_tokens(bank[i].memory) for i in row], dim=0))
        rows_pos.append(torch.cat([_tokens(bank[i].pos) for i in row], dim=0))
    return torch.stack(rows_memory, dim=1), torch.stack(rows_pos, dim=1)


def _tokens(feature: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) -> (h * w, C)."""
    return feature.reshape(feature.shape[-3], -1).T


@dataclass
class ConfidenceBank:
    """The bank of one target in one flow, with its settings and draw generator."""

    size: int = BANK_SIZE
    margin: float = REPLACE_MARGIN
    draws: int = 1
    flatten_order: str = "official"
    generator: torch.Generator | None = None
    entries: list[BankEntry] = field(default_factory=list)
    decisions: list[BankDecision] = field(default_factory=list)
    picks: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    # Prompted frames already offered to the bank (seeded once, before propagation).
    seeded: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.flatten_order not in FLATTEN_ORDERS:
            raise ValueError(f"flatten_order: expected one of {FLATTEN_ORDERS}, "
                             f"got {self.flatten_order!r}")

    def add(self, entry: BankEntry) -> BankDecision:
        self.entries, decision = bank_insert(self.entries, entry, self.size, self.margin)
        self.decisions.append(decision)
        return decision

    def pick(self, current: torch.Tensor, frame: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory and positional tokens drawn for a frame with feature ``current`` (HW, B, C)."""
        embeddings = torch.stack([e.embedding.reshape(-1) for e in self.entries])
        flat = flatten_current(current, self.flatten_order)
        weights = pickup_weights(embeddings.to(current.device), flat)
        indices = draw_entries(weights, self.draws, self.generator)
        self.picks.append((frame, tuple(self.entries[i].frame for i in indices[0].tolist())))
        return gather_memory(self.entries, indices)
