"""The model adapter interface and the registry of adapters by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from bench.types import FlowFrames, Prediction, Prompt
from bench.validate import check_table


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can handle; the runner checks prompts against it."""

    prompt_kinds: frozenset[str] = frozenset({"point", "point-random", "box", "box-jitter", "mask"})
    flow_kinds: frozenset[str] = frozenset({"volume", "image-flow"})
    needs_weights: bool = False
    devices: frozenset[str] = frozenset({"cpu"})
    # Only harness self-tests (the oracle) may see ground truth; the runner
    # then passes the full Flow instead of its FlowFrames view.
    sees_ground_truth: bool = False


@dataclass
class Adapter:
    """Base class of model adapters.

    Subclasses set ``name`` and ``capabilities`` and implement
    :meth:`predict`. Settings come from ``[models.NAME]`` in ``bench.toml``
    and arrive as keyword arguments in ``settings``.
    """

    settings: dict[str, Any] = field(default_factory=dict)

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()
    # Hidden adapters (self-tests) are not listed in default suites.
    hidden: ClassVar[bool] = False
    # Settings the adapter accepts (key -> type) and their defaults; an unknown
    # key or a wrong type is a ConfigError naming [models.NAME].key.
    settings_schema: ClassVar[dict[str, type | tuple[type, ...]]] = {}
    settings_defaults: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        check_table(self.settings, self.settings_schema, f"[models.{self.name}]")
        #: The settings after defaults: what the adapter runs with.
        self.options: dict[str, Any] = {**self.settings_defaults, **self.settings}

    def predict(self, flow: FlowFrames, prompts: Sequence[Prompt]) -> Prediction:
        """Segment every frame of ``flow`` for each prompted target.

        Parameters
        ----------
        flow : FlowFrames
            Frames only; adapters never see ground truth.
        prompts : sequence of Prompt
            The ledger's prompts for this flow (all targets, all frames).

        Returns
        -------
        Prediction
            A boolean mask per frame for every target that has a prompt.
        """
        raise NotImplementedError

    def predict_click(self, flow: FlowFrames, prompt: Prompt,
                      previous: np.ndarray | None) -> np.ndarray:
        """One step of an interactive session: the mask of ``prompt.frame``.

        ``prompt`` holds every click so far (``points`` and ``labels`` in click
        order); ``previous`` is the mask this adapter returned after the
        previous click (None before the first). The default segments the
        prompted frame alone with :meth:`predict` and ignores ``previous``;
        adapters that can refine a mask override it.
        """
        frame = flow.frames[prompt.frame]
        single = FlowFrames(f"{flow.id}/{prompt.frame}", flow.dataset, "image-flow", [frame],
                            flow.spacing if flow.kind == "image-flow" else None)
        moved = Prompt(prompt.target, 0, prompt.kind, prompt.points, prompt.labels, prompt.box,
                       prompt.mask)
        return np.asarray(self.predict(single, [moved]).masks[prompt.target][0], dtype=bool)

    def unavailable(self) -> str | None:
        """Why this adapter cannot run here (a missing package or checkpoint), or None.

        Checked when a run is planned, so a model that cannot run is reported
        once, up front, instead of failing on every flow.
        """
        return None

    def fingerprint(self) -> dict[str, Any]:
        """Identity of the model for the run record (weights hashes, settings)."""
        return {"adapter": self.name, "description": self.description,
                "settings": dict(self.options)}


def missing_modules(modules: Sequence[str]) -> list[str]:
    """The modules of ``modules`` that cannot be imported (checked without importing)."""
    from importlib.util import find_spec

    return [name for name in modules if find_spec(name) is None]


_REGISTRY: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: make an adapter available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"adapter name {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Adapter]]:
    """All adapters by name, including entry-point plugins."""
    _load_builtin()
    return dict(sorted(_REGISTRY.items()))


def create(name: str, settings: dict[str, Any] | None = None) -> Adapter:
    """Instantiate the adapter registered as ``name``."""
    adapters = registered()
    if name not in adapters:
        from difflib import get_close_matches

        hint = get_close_matches(name, adapters, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise KeyError(f"unknown model {name!r}{suggestion}; known: {', '.join(adapters)}")
    return adapters[name](settings=dict(settings or {}))


_loaded = False


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    from importlib.metadata import entry_points

    for entry in entry_points(group="medsam2_bench.adapters"):
        loaded: Callable[..., Any] | type[Adapter] = entry.load()
        if isinstance(loaded, type) and issubclass(loaded, Adapter):
            register(loaded)


BUILTIN_MODULES: tuple[str, ...] = ("adapters.reference", "adapters.registration",
                                   "adapters.random_walker", "adapters.oracle",
                                   "adapters.external", "adapters.sam2_video",
                                   "adapters.medsam2", "adapters.sam_frames")
