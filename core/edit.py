"""Edit operations: one declaration drives the CLI, the demo and the Python API.

An :class:`EditOperation` says what an edit consumes (:class:`InputKind`), which typed
parameters it takes (:class:`Param`) and how it runs (``run(context, inputs, params) ->``
:class:`EditResult`). ``idinvert edit NAME`` generates its options from the declaration
(``idinvert.cli.edit``); the demo generates its controls from the same declaration. Plugins
register operations through the ``register_edit_operations`` hook; their authors import
everything from :mod:`idinvert.plugins`.

Conventions: codes are float32 W+ arrays ``[..., L, D]`` (``L`` layers of dimension ``D``);
images are ``uint8 [N, R, R, 3]`` RGB at the model resolution ``R``.

Running an operation (what every front end does)::

    op = get_edit_operation("manipulate")
    result = run_edit(op, bundle, EditInputs({"codes": codes}), {"boundary": "age"})
    images = synthesize_result(bundle, result)     # uint8 [N, S, R, R, 3]

Nothing here imports torch at module import time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from idinvert.core.boundaries import Boundary, find_boundary, model_boundaries, parse_layers
from idinvert.core.errors import IdinvertError

if TYPE_CHECKING:
    from idinvert.core.modeldir import ModelBundle

#: Names an operation may not use for parameters: the CLI's common options.
RESERVED_NAMES = frozenset({"model", "model_ref", "out", "out_dir", "device", "batch_size", "help"})
_OPERATION_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_PARAM_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


# --------------------------------------------------------------------------- errors


class EditError(IdinvertError, ValueError):
    """An edit cannot run as requested; the message is meant for users."""


class ParamError(EditError):
    """A parameter value is invalid.

    Attributes:
        param: the declared parameter name (``"center_x"``); the CLI shows it as
            ``--center-x``, the demo highlights that control.
        message: what is wrong, without the name.
    """

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        self.message = message
        super().__init__(f"{param}: {message}")


class InputError(EditError):
    """An input (a code file or image slot) is invalid.

    Attributes:
        slot: the input slot name (``"dst"``); the CLI shows it as ``--dst``.
        message: what is wrong, without the name.
    """

    def __init__(self, slot: str, message: str) -> None:
        self.slot = slot
        self.message = message
        super().__init__(f"{slot}: {message}")


# --------------------------------------------------------------------------- inputs


class SlotType(str, Enum):
    """What one input slot holds."""

    CODES = "codes"
    """W+ codes, float32 ``[N, L, D]`` (a ``.npy`` file; ``[L, D]`` is read as ``[1, L, D]``)."""
    IMAGES = "images"
    """Images, uint8 ``[N, R, R, 3]`` RGB, already resized to the model resolution."""


@dataclass(frozen=True)
class InputSlot:
    """One named input of an :class:`InputKind`.

    Attributes:
        name: key in :class:`EditInputs` and the CLI option (``--name``).
        type: codes or images.
        help: one-line description for help texts and UI labels.
        multiple: several files may be given (image slots: ``--context a.png b.png``).
    """

    name: str
    type: SlotType
    help: str
    multiple: bool = False


class InputKind(str, Enum):
    """What an operation consumes. Front ends know how to acquire each kind.

    * ``codes``: ``codes [N, L, D]``.
    * ``two_codes``: ``src [N, L, D]`` and ``dst [N, L, D]``, paired (same N).
    * ``style_and_content``: ``style [S, L, D]`` and ``content [C, L, D]`` (any S, C).
    * ``image_and_contexts``: ``target [T, R, R, 3]`` and ``context [C, R, R, 3]`` images.
    """

    CODES = "codes"
    TWO_CODES = "two_codes"
    STYLE_AND_CONTENT = "style_and_content"
    IMAGE_AND_CONTEXTS = "image_and_contexts"

    @property
    def slots(self) -> tuple[InputSlot, ...]:
        """The named inputs of this kind, in CLI/UI order."""
        return _SLOTS[self]

    @property
    def paired(self) -> bool:
        """Whether all slots must hold the same number N of items."""
        return self is InputKind.TWO_CODES


_SLOTS: dict[InputKind, tuple[InputSlot, ...]] = {
    InputKind.CODES: (InputSlot("codes", SlotType.CODES, "W+ codes .npy: [N, L, D] or [L, D]."),),
    InputKind.TWO_CODES: (
        InputSlot("src", SlotType.CODES, "Start codes .npy: [N, L, D] or [L, D]."),
        InputSlot("dst", SlotType.CODES, "End codes .npy: [N, L, D], the same N as --src."),
    ),
    InputKind.STYLE_AND_CONTENT: (
        InputSlot("style", SlotType.CODES, "Style codes .npy: [S, L, D] (grid rows)."),
        InputSlot("content", SlotType.CODES, "Content codes .npy: [C, L, D] (grid columns)."),
    ),
    InputKind.IMAGE_AND_CONTEXTS: (
        InputSlot(
            "target", SlotType.IMAGES, "Target image(s) whose crop is pasted.", multiple=True
        ),
        InputSlot(
            "context", SlotType.IMAGES, "Context image(s) receiving the crop.", multiple=True
        ),
    ),
}


@dataclass
class EditInputs:
    """The inputs of one edit, keyed by slot name.

    Attributes:
        arrays: slot name → float32 codes ``[N, L, D]`` or uint8 images ``[N, R, R, 3]``.
        names: slot name → one display/file name per item (e.g. image file stems); optional.
    """

    arrays: dict[str, np.ndarray]
    names: dict[str, list[str]] = field(default_factory=dict)

    def __getitem__(self, slot: str) -> np.ndarray:
        if slot not in self.arrays:
            raise InputError(slot, "this input is missing")
        return self.arrays[slot]

    def names_of(self, slot: str) -> list[str]:
        """Item names of ``slot`` (zero-padded indices when none were given)."""
        n = len(self[slot])
        names = self.names.get(slot)
        if names is not None and len(names) == n:
            return list(names)
        return index_names(n)


def index_names(n: int) -> list[str]:
    """``["000", "001", ...]`` (at least three digits)."""
    width = max(3, len(str(max(n - 1, 0))))
    return [f"{i:0{width}d}" for i in range(n)]


def check_inputs(kind: InputKind, inputs: EditInputs, bundle: ModelBundle) -> None:
    """Check that ``inputs`` has every slot of ``kind`` with model-compatible shapes.

    Normalises in place: a single code ``[L, D]`` becomes ``[1, L, D]``, floating codes become
    float32, a single image ``[R, R, 3]`` becomes ``[1, R, R, 3]``.

    Raises:
        InputError: naming the slot (wrong rank, codes of another model, N mismatch, ...).
    """
    L, D = bundle.code_shape
    R = bundle.resolution
    for slot in kind.slots:
        arr = inputs[slot.name]
        if not isinstance(arr, np.ndarray):
            raise InputError(slot.name, f"expected a numpy array, got {type(arr).__name__}")
        if slot.type is SlotType.CODES:
            if arr.ndim == 2:
                arr = inputs.arrays[slot.name] = arr[None]
            if arr.ndim != 3:
                raise InputError(
                    slot.name, f"codes must be [N, {L}, {D}], got shape {list(arr.shape)}"
                )
            if tuple(arr.shape[1:]) != (L, D):
                raise InputError(
                    slot.name,
                    f"codes have per-code shape {list(arr.shape[1:])} but the model expects "
                    f"[{L}, {D}] (L layers × D dims): codes of another model?",
                )
            if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)):
                raise InputError(slot.name, "codes must be finite floating-point numbers")
            inputs.arrays[slot.name] = arr.astype(np.float32, copy=False)
        else:
            if arr.ndim == 3:
                arr = inputs.arrays[slot.name] = arr[None]
            if arr.dtype != np.uint8 or arr.ndim != 4 or tuple(arr.shape[1:]) != (R, R, 3):
                raise InputError(
                    slot.name,
                    f"images must be uint8 [N, {R}, {R}, 3], got {arr.dtype} {list(arr.shape)}",
                )
        if len(arr) == 0:
            raise InputError(slot.name, "no items given")
    if kind.paired:
        first, *rest = kind.slots
        n = len(inputs[first.name])
        for slot in rest:
            m = len(inputs[slot.name])
            if m != n:
                raise InputError(
                    slot.name,
                    f"has {m} code(s) but {first.name} has {n}: they are paired one to one",
                )


# --------------------------------------------------------------------------- parameters


class ParamType(str, Enum):
    """Parameter types; each maps to one CLI option type and one demo control. ``Param``
    also accepts the values as plain strings (``Param("sigma", "float", 0.5)``).

    ========  =========================  ===========================  ====================
    type      Python value (resolved)    CLI                          demo control
    ========  =========================  ===========================  ====================
    int       ``int``                    ``--x 5``                    slider / number
    float     ``float``                  ``--x 0.5``                  slider / number
    bool      ``bool``                   ``--x/--no-x``               checkbox
    choice    ``str`` in ``choices``     ``--x NAME``                 dropdown / radio
    layers    sorted ``list[int]``       ``--x "0-5"`` / ``"0,2"``    checkbox group 0..L-1
    boundary  :class:`Boundary`          ``--x NAME|FILE``            dropdown of model's
    string    ``str``                    ``--x TEXT``                 textbox
    ========  =========================  ===========================  ====================
    """

    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    CHOICE = "choice"
    LAYERS = "layers"
    BOUNDARY = "boundary"
    STRING = "string"


#: A value computed from the loaded model (e.g. a default scaled to its resolution).
ModelValue = Callable[["ModelBundle"], Any]
Bound = int | float | ModelValue | None


@dataclass(frozen=True)
class Param:
    """A typed, documented parameter of an :class:`EditOperation`.

    Attributes:
        name: Python identifier (``center_x``); the CLI option is ``--center-x``.
        type: one of :class:`ParamType`.
        default: the default value, or a callable ``(bundle) -> value`` for model-dependent
            defaults (see :meth:`default_for`). A ``layers`` default of ``None`` resolves to
            the default layers of the operation's boundary parameter, if it has one with
            layers, else to all layers ``[0, ..., L-1]``; say which in ``default_help``.
        help: one sentence for the CLI help and the UI tooltip.
        min: inclusive lower bound (int/float), or a callable ``(bundle) -> bound``.
        max: inclusive upper bound, or a callable ``(bundle) -> bound``.
        step: UI granularity for sliders (not enforced).
        choices: allowed values of a ``choice`` parameter.
        required: no default; the user must give a value.
        label: short UI label; defaults to the name in words.
        default_help: how a callable or ``None`` default is chosen, for help texts.
    """

    name: str
    type: ParamType
    default: Any = None
    help: str = ""
    min: Bound = None
    max: Bound = None
    step: float | int | None = None
    choices: tuple[str, ...] = ()
    required: bool = False
    label: str = ""
    default_help: str = ""

    def __post_init__(self) -> None:
        if not _PARAM_NAME.match(self.name):
            raise ValueError(f"parameter name {self.name!r} must be snake_case (e.g. 'center_x')")
        if self.name in RESERVED_NAMES:
            raise ValueError(
                f"parameter name {self.name!r} is reserved for the CLI's common options"
            )
        object.__setattr__(self, "type", ParamType(self.type))
        object.__setattr__(self, "choices", tuple(self.choices))
        if self.type is ParamType.CHOICE and not self.choices:
            raise ValueError(f"parameter {self.name!r}: a choice parameter needs choices")
        if self.choices and self.type is not ParamType.CHOICE:
            raise ValueError(f"parameter {self.name!r}: choices are only for type 'choice'")
        if (self.min is not None or self.max is not None) and self.type not in (
            ParamType.INT,
            ParamType.FLOAT,
        ):
            raise ValueError(f"parameter {self.name!r}: min/max are only for int and float")
        if self.required and self.default is not None:
            raise ValueError(f"parameter {self.name!r}: required parameters have no default")
        if self.type is ParamType.BOOL and not isinstance(self.default, bool):
            raise ValueError(
                f"parameter {self.name!r}: a bool parameter needs a True/False default"
            )
        static = not callable(self.default) and self.default is not None
        bounds_static = not callable(self.min) and not callable(self.max)
        if static and bounds_static and self.type is not ParamType.BOUNDARY:
            _coerce(self, self.default, None)  # a bad static default is a declaration bug

    @property
    def option_name(self) -> str:
        """The CLI option: ``--center-x``."""
        return "--" + self.name.replace("_", "-")

    @property
    def display_label(self) -> str:
        """``label`` or the name in words (``"center x"``)."""
        return self.label or self.name.replace("_", " ")

    def default_for(self, bundle: ModelBundle | None) -> Any:
        """The default for ``bundle`` (callable defaults are evaluated; ``None`` = no default)."""
        if callable(self.default):
            if bundle is None:
                return None
            return self.default(bundle)
        return self.default

    def bounds_for(
        self, bundle: ModelBundle | None
    ) -> tuple[float | int | None, float | int | None]:
        """Inclusive ``(min, max)`` for ``bundle`` (``None`` = unbounded / unknown)."""

        def value(b: Bound) -> float | int | None:
            if callable(b):
                return None if bundle is None else b(bundle)
            return b

        return value(self.min), value(self.max)

    def choices_for(self, bundle: ModelBundle | None) -> list[str]:
        """Choices to offer: a choice's ``choices``; for ``boundary`` the names of the boundaries
        inside the model directory (a file path is also accepted)."""
        if self.type is ParamType.CHOICE:
            return list(self.choices)
        if self.type is ParamType.BOUNDARY and bundle is not None:
            return sorted(model_boundaries(bundle.path))
        return []


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _coerce(param: Param, value: Any, bundle: ModelBundle | None) -> Any:
    """Convert and check one value; raises :class:`ParamError` naming the parameter."""
    t = param.type
    name = param.name
    if t is ParamType.INT:
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ParamError(name, f"expected an integer, got {value!r}") from None
        if not _is_int(value):
            raise ParamError(name, f"expected an integer, got {value!r}")
        value = int(value)
    elif t is ParamType.FLOAT:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise ParamError(name, f"expected a number, got {value!r}") from None
        if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)
        ):
            raise ParamError(name, f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ParamError(name, f"must be a finite number, got {value}")
    elif t is ParamType.BOOL:
        if not isinstance(value, (bool, np.bool_)):
            raise ParamError(name, f"expected true or false, got {value!r}")
        value = bool(value)
    elif t is ParamType.CHOICE:
        if value not in param.choices:
            raise ParamError(name, f"must be one of {', '.join(param.choices)}; got {value!r}")
    elif t is ParamType.STRING:
        if not isinstance(value, str):
            raise ParamError(name, f"expected text, got {value!r}")
    elif t is ParamType.LAYERS:
        num_layers = bundle.num_layers if bundle is not None else None
        try:
            value = parse_layers(value, num_layers)
        except ValueError as exc:
            raise ParamError(name, str(exc)) from None
        if not value and num_layers is not None:
            raise ParamError(name, "select at least one layer")
    elif t is ParamType.BOUNDARY:
        if not isinstance(value, (Boundary, str, Path)):
            raise ParamError(name, f"expected a boundary name or file, got {value!r}")
        try:
            if not isinstance(value, Boundary):
                value = find_boundary(value, bundle.path if bundle is not None else None)
            if bundle is not None:
                value.check_fits(*bundle.code_shape)
        except (IdinvertError, ValueError, OSError) as exc:
            raise ParamError(name, str(exc)) from None
    if t in (ParamType.INT, ParamType.FLOAT):
        lo, hi = param.bounds_for(bundle)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            lo_s = "-inf" if lo is None else f"{lo:g}"
            hi_s = "inf" if hi is None else f"{hi:g}"
            raise ParamError(name, f"must be in [{lo_s}, {hi_s}], got {value:g}")
    return value


# --------------------------------------------------------------------------- results


class Layout(str, Enum):
    """How result codes are arranged; front ends pick the presentation from it.

    * ``batch``: ``[N, L, D]``, one image per code.
    * ``sequences``: ``[N, S, L, D]``, a sequence of S frames per sample (strip + GIF).
    * ``grid``: ``[rows, cols, L, D]``, one grid image (e.g. style rows × content columns).
    """

    BATCH = "batch"
    SEQUENCES = "sequences"
    GRID = "grid"

    @property
    def code_rank(self) -> int:
        """Number of leading axes before ``[L, D]``."""
        return 1 if self is Layout.BATCH else 2


@dataclass
class EditResult:
    """What an operation returns.

    Attributes:
        codes: float32 codes, ``[N, L, D]`` / ``[N, S, L, D]`` / ``[rows, cols, L, D]`` by the
            operation's :class:`Layout`.
        layout: filled in by :func:`run_edit` from :attr:`EditOperation.layout`, the one place
            a layout is stated; leave it out (a value given here, as plugins written before
            did, is used instead).
        names: one name per item of the first axis (samples; grid rows), used for file names
            and UI captions; ``None`` = zero-padded indices.
        column_names: grid only: one name per column.
        extra_images: label → uint8 ``[N, H, W, 3]`` aligned with the first axis (e.g.
            diffusion's stitched inputs, ``{"input": ...}``); written as ``NAME_LABEL.png``.
        arrays: extra arrays written as ``KEY.npy`` (e.g. SeFa's ``directions``).
        info: JSON-serialisable details (distances, layers, losses, ...).
        params: the resolved parameter values (filled in by :func:`run_edit`).
    """

    codes: np.ndarray
    layout: Layout | None = None
    names: list[str] | None = None
    column_names: list[str] | None = None
    extra_images: dict[str, np.ndarray] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def item_names(self) -> list[str]:
        """Names of the first axis (given or zero-padded indices)."""
        n = self.codes.shape[0]
        return list(self.names) if self.names is not None else index_names(n)

    def column_item_names(self) -> list[str]:
        """Grid column names (given or zero-padded indices)."""
        n = self.codes.shape[1] if self.codes.ndim > 1 else 0
        return list(self.column_names) if self.column_names is not None else index_names(n)


def check_result(op: EditOperation, result: EditResult, bundle: ModelBundle) -> EditResult:
    """Normalise and check an operation's result (float32, shapes match the layout).

    Raises:
        EditError: the plugin returned something malformed (a plugin bug, named as such).
    """
    who = f"operation '{op.name}'" + (f" (plugin {op.plugin})" if op.plugin else "")
    if not isinstance(result, EditResult):
        raise EditError(f"{who} returned {type(result).__name__}, not an EditResult")
    layout = op.layout if result.layout is None else Layout(result.layout)  # older plugins
    codes = np.asarray(result.codes)
    L, D = bundle.code_shape
    rank = layout.code_rank + 2
    if codes.ndim != rank or tuple(codes.shape[-2:]) != (L, D) or codes.size == 0:
        raise EditError(
            f"{who} returned codes {list(codes.shape)}; layout '{layout.value}' needs rank {rank} "
            f"ending in [{L}, {D}]"
        )
    if not np.issubdtype(codes.dtype, np.floating) or not np.all(np.isfinite(codes)):
        raise EditError(f"{who} returned non-finite or non-float codes")
    result.codes = codes.astype(np.float32, copy=False)
    result.layout = layout
    if result.names is not None and len(result.names) != codes.shape[0]:
        raise EditError(f"{who}: {len(result.names)} names for {codes.shape[0]} items")
    if result.column_names is not None and (
        layout is not Layout.GRID or len(result.column_names) != codes.shape[1]
    ):
        raise EditError(f"{who}: column_names must match the grid's columns")
    for label, imgs in result.extra_images.items():
        imgs = np.asarray(imgs)
        if (
            imgs.dtype != np.uint8
            or imgs.ndim != 4
            or imgs.shape[0] != codes.shape[0]
            or imgs.shape[-1] != 3
        ):
            raise EditError(
                f"{who}: extra image set {label!r} must be uint8 [{codes.shape[0]}, H, W, 3]"
            )
    for key, arr in result.arrays.items():
        if not re.match(r"^[A-Za-z0-9_.-]+$", key) or np.asarray(arr).dtype.hasobject:
            raise EditError(f"{who}: extra array {key!r} needs a plain name and a numeric dtype")
    return result


# --------------------------------------------------------------------------- operations


ProgressCallback = Callable[[int, int, str], None]
"""``progress(done, total, description)``; called by long operations (e.g. per step)."""


@dataclass
class EditContext:
    """What an operation gets from its host besides inputs and parameters.

    Attributes:
        bundle: the loaded model (networks frozen, on ``bundle.device``).
        progress: optional progress callback, see :data:`ProgressCallback`.
        batch_size: how many images to push through a network at once.
    """

    bundle: ModelBundle
    progress: ProgressCallback | None = None
    batch_size: int = 8

    @property
    def device(self) -> Any:
        """The model's ``torch.device``."""
        return self.bundle.device

    def report(self, done: int, total: int, description: str = "") -> None:
        """Forward progress to the host (no-op without a callback)."""
        if self.progress is not None:
            self.progress(done, total, description)


RunFunction = Callable[[EditContext, EditInputs, dict[str, Any]], EditResult]
ValidateFunction = Callable[[dict[str, Any], "ModelBundle"], None]


@dataclass(frozen=True)
class EditOperation:
    """The declaration of an edit operation.

    Attributes:
        name: lowercase, dash-separated (``"manipulate"``); the CLI subcommand name.
        title: short human title (``"Semantic manipulation"``).
        description: one paragraph; the CLI help and the demo tab text.
        inputs: what it consumes, see :class:`InputKind`.
        params: typed parameters, in display order.
        run: ``run(context, inputs, params) -> EditResult``; ``params`` holds resolved values
            for every declared parameter (see :meth:`resolve_params`).
        layout: the :class:`Layout` of the result codes (default ``sequences``); the only place
            it is stated: :func:`run_edit` copies it onto the :class:`EditResult`.
        validate: optional ``validate(params, bundle)`` for rules spanning several parameters
            or the model (e.g. a crop inside the image); raises :class:`ParamError`.
        plugin: the registering plugin's name (filled in by the plugin registry).
    """

    name: str
    title: str
    description: str
    inputs: InputKind
    params: tuple[Param, ...]
    run: RunFunction
    layout: Layout = Layout.SEQUENCES
    validate: ValidateFunction | None = None
    plugin: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _OPERATION_NAME.match(self.name):
            raise ValueError(f"operation name {self.name!r} must be lowercase words joined by '-'")
        object.__setattr__(self, "inputs", InputKind(self.inputs))
        object.__setattr__(self, "layout", Layout(self.layout))
        object.__setattr__(self, "params", tuple(self.params))
        names = [p.name for p in self.params]
        slots = {s.name for s in self.inputs.slots}
        dupes = sorted({n for n in names if names.count(n) > 1} | (set(names) & slots))
        if dupes:
            raise ValueError(
                f"operation {self.name!r}: duplicate or input-clashing parameter names {dupes}"
            )
        if not all(isinstance(p, Param) for p in self.params):
            raise TypeError(f"operation {self.name!r}: params must be Param instances")
        if not callable(self.run):
            raise TypeError(f"operation {self.name!r}: run must be callable")

    def param(self, name: str) -> Param:
        """The declared parameter ``name``."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"operation {self.name!r} has no parameter {name!r}")

    def resolve_params(
        self, values: Mapping[str, Any], bundle: ModelBundle | None
    ) -> dict[str, Any]:
        """Fill defaults, convert and check ``values`` against the declaration.

        Args:
            values: parameter name → value as given by a user (missing or ``None`` = default).
            bundle: the model (for layer ranges, boundaries, model-dependent defaults).

        Returns:
            name → resolved value for every declared parameter (``layers`` → sorted
            ``list[int]``, never ``None`` when ``bundle`` is given; ``boundary`` →
            :class:`Boundary`; other parameters without a default → ``None``).

        Raises:
            ParamError: naming the first offending parameter.
        """
        known = {p.name for p in self.params}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParamError(
                unknown[0],
                f"unknown parameter of '{self.name}' (known: {', '.join(sorted(known)) or 'none'})",
            )
        resolved: dict[str, Any] = {}
        for p in self.params:
            value = values.get(p.name)
            if value is None:
                value = p.default_for(bundle)
                if value is None:
                    if p.required:
                        raise ParamError(p.name, "a value is required")
                    resolved[p.name] = None
                    continue
            resolved[p.name] = _coerce(p, value, bundle)
        if bundle is not None:
            for p in self.params:
                if p.type is ParamType.LAYERS and resolved[p.name] is None:
                    resolved[p.name] = _default_layers(resolved, bundle)
        if self.validate is not None and bundle is not None:
            self.validate(resolved, bundle)
        return resolved


def _default_layers(resolved: Mapping[str, Any], bundle: ModelBundle) -> list[int]:
    """A ``layers`` parameter left at ``None``: the default layers of the operation's boundary
    parameter when it has one that declares layers, else every layer ``[0, ..., L-1]``."""
    for value in resolved.values():
        if isinstance(value, Boundary) and value.layers:
            return list(value.layers)
    return list(range(bundle.num_layers))


def run_edit(
    op: EditOperation,
    bundle: ModelBundle,
    inputs: EditInputs,
    params: Mapping[str, Any] | None = None,
    *,
    progress: ProgressCallback | None = None,
    batch_size: int = 8,
) -> EditResult:
    """Check inputs and parameters, run ``op`` and check its result.

    Args:
        op: the operation.
        bundle: the model.
        inputs: the slots of ``op.inputs`` (codes float32 ``[N, L, D]``, images uint8
            ``[N, R, R, 3]``).
        params: name → value (missing = default).
        progress: optional :data:`ProgressCallback`.
        batch_size: network batch size for operations that run networks.

    Raises:
        InputError, ParamError: invalid inputs/parameters (nothing has run yet).
    """
    check_inputs(op.inputs, inputs, bundle)
    resolved = op.resolve_params(dict(params or {}), bundle)
    context = EditContext(bundle, progress, batch_size)
    result = check_result(op, op.run(context, inputs, dict(resolved)), bundle)
    result.params = resolved
    return result


def synthesize_result(bundle: ModelBundle, result: EditResult, batch_size: int = 8) -> np.ndarray:
    """Render every code of ``result`` → uint8 ``[*codes.shape[:-2], R, R, 3]``."""
    import torch

    from idinvert.core.images import to_uint8
    from idinvert.core.inversion import synthesize

    lead = result.codes.shape[:-2]
    flat = torch.from_numpy(np.ascontiguousarray(result.codes.reshape(-1, *bundle.code_shape)))
    images = to_uint8(synthesize(bundle, flat, batch_size))
    return images.reshape(*lead, *images.shape[1:])


def params_to_json(params: Mapping[str, Any]) -> dict[str, Any]:
    """Resolved parameters → JSON-serialisable values (a boundary becomes its name/source)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, Boundary):
            out[k] = {"name": v.name, "layers": list(v.layers), "source": v.source}
        elif isinstance(v, (np.integer, np.floating)):
            out[k] = v.item()
        elif isinstance(v, Sequence) and not isinstance(v, str):
            out[k] = list(v)
        else:
            out[k] = v
    return out
