"""``sam2.1``: the ``sam2`` adapter with a SAM 2.1 config by default.

Model settings are per adapter name, not per suite, and ``[models.sam2]``
keeps the SAM 2.0 small config MedSAM-2 was fine-tuned from. Suites that
compare against SAM 2.1 (``namesakes``) name this adapter instead, with its
own ``[models."sam2.1"]`` table (every ``sam2`` setting; ``config`` must be a
SAM 2.1 config).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bench.adapters.base import register
from bench.adapters.sam2.adapter import SAM2Adapter, Sam2Options
from pydantic import field_validator

from bench.settings import Settings


class Sam21Options(Sam2Options):
    """``[models."sam2.1"]``: the ``sam2`` settings, SAM 2.1 tiny by default."""

    config: str = "sam2.1_hiera_t"

    @field_validator("config")
    @classmethod
    def _sam21_only(cls, value: str) -> str:
        if not value.startswith("sam2.1_"):
            raise ValueError("expected a SAM 2.1 config (sam2.1_hiera_{t,s,b+,l}), "
                             f"got {value!r}")
        return value


@register
@dataclass
class SAM21Adapter(SAM2Adapter):
    """The stock SAM 2.1 video predictor (tiny to large)."""

    name = "sam2.1"
    description = ("SAM 2.1 video predictor (sam2 package), as `sam2` with a SAM 2.1 config; "
                   "scores = IoU-head prediction per frame.")
    Options: ClassVar[type[Settings]] = Sam21Options
