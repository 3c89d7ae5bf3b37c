"""The model adapter interface and the registry of adapters by name.

A model is a subclass of :class:`Adapter` (``name``, ``description``,
``capabilities``, ``Options``, :meth:`Adapter.predict`). The built-in ones
register with :func:`register`; a separately installed package adds its own
through the ``medsam2_bench.adapters`` entry-point group (README "Your own
model"), loaded after the built-ins. An entry point that cannot be used is
skipped with one warning line naming its distribution (:func:`plugin_problems`)
and never removes another model.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
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
    # In-context models (e.g. universeg) segment from a support set of (frame, mask)
    # pairs: under one-prompt with k_shot they get the ledger's support rows as mask
    # prompts instead of the template prompt (bench.prompts.scope.adapter_views).
    in_context: bool = False
    # Models whose answer does not depend on what a prompt shows, only on which targets are
    # prompted (saved predictions, constant baselines): they can run protocols that show
    # nothing in the flow itself (alpnet-protocol's support slices of another volume).
    prompt_free: bool = False
    # Interactive sessions (cvpr25-interactive): what the adapter accepts besides its prompt
    # kinds ("box3d" there: the challenge's 3D box; without it a model gets the middle-slice
    # box). A model is given only what it accepts: with several_clicks False only the latest
    # click per target, with negative_clicks False no background click, and the previous
    # prediction only with previous_mask True (see Adapter.predict_step).
    several_clicks: bool = True
    negative_clicks: bool = True
    previous_mask: bool = False


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

    def predict_step(self, flow: FlowFrames, prompts: Sequence[Prompt],
                     previous: Prediction | None) -> Prediction:
        """One step of a 3D interactive session (``cvpr25-interactive``).

        ``prompts`` hold, per target, the box and every click so far that the
        capabilities accept (clicks as ``point`` prompts, one per clicked
        frame, in click order); ``previous`` is this adapter's previous
        Prediction when ``capabilities.previous_mask`` is True, else None. The
        default ignores ``previous`` and calls :meth:`predict`.
        """
        return self.predict(flow, prompts)

    def use_run_seed(self, seed: int) -> bool:
        """Hand the unit's seed (``--seeds``) to the adapter before :meth:`predict`.

        Adapters with randomness of their own derive it from this seed, so that
        it enters the seed spread. Returns True when the predictions depend on
        the seed (the harness then does not reuse cached predictions across
        seeds); the default ignores it.
        """
        return False

    def unit_notes(self, flow: FlowFrames, prompts: Sequence[Prompt]) -> dict[str, str]:
        """What this adapter chose for one unit that its settings alone do not say.

        Recorded per unit (``notes`` in ``units/KEY.json`` and ``units.csv``)
        and listed in the report's Models section, e.g. ``medsam2``'s memory
        per flow. Called with the unit's flow and prompts, also on a cache
        hit; the default has nothing to say.
        """
        return {}

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
#: The entry-point group through which a separately installed package adds models.
ENTRY_POINT_GROUP = "medsam2_bench.adapters"
BUILTIN = "built-in"
# Where each adapter loaded from an entry point comes from ("DIST VERSION"), by name.
_SOURCES: dict[str, str] = {}
# One line per entry point that could not be loaded (kept: never raised, never a traceback).
_PROBLEMS: list[str] = []


def register(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: make an adapter available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    owner = _REGISTRY.get(cls.name)
    if owner is not None and owner is not cls:
        raise ValueError(f"adapter name {cls.name!r} is registered twice (already by "
                         f"{owner.__module__}.{owner.__qualname__})")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Adapter]]:
    """All adapters by name: the built-in ones, then those of entry points."""
    _load_builtin()
    return dict(sorted(_REGISTRY.items()))


def source(name: str) -> str:
    """Where the adapter ``name`` comes from, for ``bench list models``.

    ``built-in`` for this package's adapters, ``DIST VERSION`` for one added by
    an installed distribution's entry point, ``module M`` for one registered
    by importing a module (tests, scripts).
    """
    _load_builtin()
    if name in _SOURCES:
        return _SOURCES[name]
    module = _REGISTRY[name].__module__
    return BUILTIN if module.startswith("bench.") else f"module {module}"


def plugin_problems() -> list[str]:
    """One line per ``medsam2_bench.adapters`` entry point that was skipped, and why."""
    _load_builtin()
    return list(_PROBLEMS)


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
    """Import the built-in adapters, then those of installed entry points (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        problem = _load_entry_point(entry)
        if problem:
            _PROBLEMS.append(problem)
    if _PROBLEMS and _is_main_process():
        for line in _PROBLEMS:  # the built-ins and the other plugins stay available
            print(f"warning: {line}", file=sys.stderr)


def _load_entry_point(entry: EntryPoint) -> str | None:
    """Register the adapter class an entry point names; the reason it cannot be, or None.

    A plugin that is skipped leaves the registry as it was (its module may
    have registered classes of its own while being imported).
    """
    dist = getattr(entry, "dist", None)
    origin = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    before = dict(_REGISTRY)
    try:
        loaded: Any = entry.load()
    except Exception as err:  # third-party code: skipped with a warning line, nothing else
        problem: str | None = (f"cannot import it ({type(err).__name__}: {err})"
                               .replace("\n", " "))
    else:
        problem = _entry_point_problem(entry, loaded, before)
    if problem is not None:
        _REGISTRY.clear()
        _REGISTRY.update(before)
        return (f"model plugin {entry.name!r} skipped ({ENTRY_POINT_GROUP} entry point "
                f"'{entry.name} = {entry.value}' of {origin}): {problem}")
    _REGISTRY[entry.name] = loaded
    _SOURCES[entry.name] = origin
    return None


def _entry_point_problem(entry: EntryPoint, loaded: Any,
                         before: Mapping[str, type[Adapter]]) -> str | None:
    """Why ``loaded``, the object ``entry`` names, cannot be registered (``before``: the
    registry so far)."""
    if not (isinstance(loaded, type) and issubclass(loaded, Adapter)):
        return f"{entry.value} is not a subclass of bench.adapters.Adapter"
    if loaded.name != entry.name:
        return f"the entry point's name must be the class's name, {loaded.name!r}"
    owner = before.get(entry.name)
    if owner is not None and owner is not loaded:
        taken = "a built-in model" if owner.__module__.startswith("bench.") \
            else f"{owner.__module__}.{owner.__qualname__}"
        return f"the name {entry.name!r} is already taken by {taken}"
    return None


def _is_main_process() -> bool:
    # Spawned workers load the registry again: the driver has already printed its warnings.
    import multiprocessing

    return multiprocessing.parent_process() is None


BUILTIN_MODULES: tuple[str, ...] = ("bench.adapters.reference", "bench.adapters.registration",
                                   "bench.adapters.random_walker", "bench.adapters.oracle",
                                   "bench.adapters.external", "bench.adapters.sam2.adapter",
                                   "bench.adapters.medsam2.adapter", "bench.adapters.medsam2_ma",
                                   "bench.adapters.sam21", "bench.adapters.sam.adapter",
                                   "bench.adapters.universeg")
