"""The model adapter interface and the registry of adapters by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from bench.errors import unknown_name
from bench.settings import Settings, validate
from bench.types import FlowFrames, Prediction, Prompt


def _number(value: Any) -> Any:
    # Refuse booleans and strings here, so the message says "a number" rather than
    # naming one member of the int | float union.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("number", "expected a number")
    return value


Number = Annotated[int | float, BeforeValidator(_number)]
"""An integer or a float, kept as given (``15`` stays ``15`` in the fingerprint)."""


class NoSettings(Settings):
    """The settings of an adapter that takes none: any key is an error."""


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
    and arrive as the table ``settings``; they are validated against the
    adapter's ``Options`` model (a strict :class:`bench.settings.Settings`),
    and the result, with every default filled in, is ``options``.
    """

    settings: Mapping[str, Any] = field(default_factory=dict)

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()
    # Hidden adapters (self-tests) are not listed in default suites.
    hidden: ClassVar[bool] = False
    # The settings model; an unknown key or a wrong value is a ConfigError naming
    # [models.NAME].key.
    Options: ClassVar[type[Settings]] = NoSettings

    def __post_init__(self) -> None:
        #: The settings after validation and defaults: what the adapter runs with.
        self.options: Any = validate(self.Options, self.settings, self.where)

    @property
    def where(self) -> str:
        """Where the settings come from, for messages: ``[models.NAME]``."""
        return f"[models.{self.name}]"

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

    def use_run_seed(self, seed: int) -> bool:
        """Hand the unit's seed (``--seeds``) to the adapter before :meth:`predict`.

        Adapters with randomness of their own derive it from this seed, so that
        it enters the seed spread. Returns True when the predictions depend on
        the seed (the harness then does not reuse cached predictions across
        seeds); the default ignores it.
        """
        return False

    def unavailable(self) -> str | None:
        """Why this adapter cannot run here (a missing package or checkpoint), or None.

        Checked when a run is planned, so a model that cannot run is reported
        once, up front, instead of failing on every flow.
        """
        return None

    def fingerprint(self) -> dict[str, Any]:
        """Identity of the model for the run record (weights hashes, settings)."""
        return {"adapter": self.name, "description": self.description,
                "settings": self.options.model_dump()}


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


def create(name: str, settings: Mapping[str, Any] | None = None) -> Adapter:
    """Instantiate the adapter registered as ``name``.

    Raises
    ------
    ConfigError
        For an unknown name (with the nearest registered one) or bad settings.
    """
    adapters = registered()
    if name not in adapters:
        raise unknown_name("model", name, adapters)
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


BUILTIN_MODULES: tuple[str, ...] = ("bench.adapters.reference", "bench.adapters.registration",
                                   "bench.adapters.random_walker", "bench.adapters.oracle",
                                   "bench.adapters.external", "bench.adapters.sam2.adapter",
                                   "bench.adapters.medsam2.adapter", "bench.adapters.medsam2_ma",
                                   "bench.adapters.sam21", "bench.adapters.sam.adapter")
