"""Edit math (core/editing.py) against the official reference vectors, and the declaration
API (core/edit.py): parameter validation, input checks, result checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import vectors as V

from idinvert.core import editing
from idinvert.core.boundaries import parse_layers
from idinvert.core.edit import EditError, EditInputs, InputError, Param, check_inputs, run_edit
from idinvert.plugins import (
    Boundary,
    EditOperation,
    EditResult,
    InputKind,
    Layout,
    ParamError,
    ParamType,
)

ATOL = 1e-6


@pytest.fixture(scope="module")
def edit_codes() -> np.ndarray:
    return V.load("edit_codes.npy")


@pytest.fixture(scope="module")
def editing_config() -> dict:
    return V.config()["editing"]


# --------------------------------------------------------------------------- conformance


def test_interpolate_matches_official(edit_codes: np.ndarray) -> None:
    out = editing.interpolate(edit_codes[[0, 0]], edit_codes[1:], 7)
    assert out.shape == (2, 7, 10, 64)
    np.testing.assert_allclose(out, V.load("interpolate_out.npy"), rtol=0, atol=ATOL)
    np.testing.assert_array_equal(out[:, 0], edit_codes[[0, 0]])
    np.testing.assert_allclose(out[:, -1], edit_codes[1:], atol=ATOL)


def test_manipulate_matches_official(edit_codes: np.ndarray, editing_config: dict) -> None:
    layers = parse_layers(editing_config["manipulate_layers"], 10)
    out = editing.manipulate(edit_codes, V.load("boundary.npy"), -3.0, 3.0, 7, layers)
    ref = V.load("manipulate_out.npy")
    assert out.dtype == ref.dtype == np.float64 and out.shape == ref.shape == (3, 7, 10, 64)
    np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL)
    untouched = [i for i in range(10) if i not in layers]
    np.testing.assert_array_equal(
        out[:, :, untouched], np.repeat(edit_codes[:, None, untouched], 7, 1)
    )


def test_manipulate_truncation_strength_matches_official(
    edit_codes: np.ndarray, editing_config: dict
) -> None:
    strength = editing.layerwise_strength(10, 0.7, 8)
    np.testing.assert_array_equal(strength, editing_config["layerwise_strength"])
    out = editing.manipulate(edit_codes, V.load("boundary.npy"), -3.0, 3.0, 7, None, strength)
    np.testing.assert_allclose(out, V.load("manipulate_strength_out.npy"), rtol=0, atol=ATOL)


def test_mix_style_matches_official(edit_codes: np.ndarray, editing_config: dict) -> None:
    out = editing.mix_style(edit_codes[:2], edit_codes, editing_config["mix_layers"])
    assert out.shape == (2, 3, 10, 64)
    np.testing.assert_array_equal(out, V.load("mix_style_out.npy"))


def test_mask_and_stitch_match_official() -> None:
    from idinvert.core.images import to_tensor

    run = V.config()["runs"]["diffusion_5"]
    mask = editing.rect_mask(64, run["center_x"], run["center_y"], run["crop_x"], run["crop_y"])
    np.testing.assert_array_equal(mask, V.load("diffusion_mask.npy"))
    contexts = to_tensor(V.load("diffusion_context_uint8.npy")).numpy()
    stitched = editing.stitch(V.load("target_preprocessed.npy")[None], contexts, mask)
    np.testing.assert_array_equal(stitched, V.load("diffusion_stitched_input.npy"))


def test_stitch_is_target_major() -> None:
    t = np.stack([np.full((3, 4, 4), v, np.float32) for v in (1.0, 2.0)])
    c = np.stack([np.full((3, 4, 4), v, np.float32) for v in (-1.0, -2.0, -3.0)])
    mask = editing.rect_mask(4, 1, 1, 2, 2)
    out = editing.stitch(t, c, mask)
    assert out.shape == (6, 3, 4, 4)
    assert [(o[0, 0, 0], o[0, 3, 3]) for o in out] == [
        (1, -1),
        (1, -2),
        (1, -3),
        (2, -1),
        (2, -2),
        (2, -3),
    ]


def test_manipulate_broadcasts_single_direction() -> None:
    codes = np.zeros((1, 4, 3), np.float32)
    out = editing.manipulate(codes, np.array([1.0, 0, 0]), -1, 1, 3, [1, 2])
    assert out.shape == (1, 3, 4, 3)
    np.testing.assert_array_equal(out[0, :, 1, 0], [-1, 0, 1])
    np.testing.assert_array_equal(out[0, :, 0], 0)


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda c: editing.interpolate(c, c[:, :5], 7), "dst"),
        (lambda c: editing.interpolate(c, c[:2], 7), "dst"),
        (lambda c: editing.interpolate(c, c, 1), "steps"),
        (lambda c: editing.interpolate(c[0], c[0], 3), "src"),
        (lambda c: editing.manipulate(c, np.ones((12, 64)), steps=3), "boundary"),
        (lambda c: editing.manipulate(c, np.ones((10, 32)), steps=3), "boundary"),
        (lambda c: editing.manipulate(c, np.ones((10, 64)), layers=[3, 10]), "layers"),
        (lambda c: editing.manipulate(c, np.ones((10, 64)), steps=0), "steps"),
        (lambda c: editing.manipulate(c, np.ones((10, 64)), strength=[1.0, 2.0]), "strength"),
        (lambda c: editing.manipulate(c, np.ones((10, 64)), start=float("nan")), "start"),
        (lambda c: editing.mix_style(c, c[:, :, :8]), "content"),
        (lambda c: editing.mix_style(c, c, [-1]), "layers"),
        (lambda c: editing.layerwise_strength(10, 0.7, 11), "trunc_layers"),
        (lambda c: editing.layerwise_strength(10, 1.5, 2), "psi"),
        (lambda c: editing.rect_mask(64, 10, 30, 27, 27), "center_x"),
        (lambda c: editing.rect_mask(64, 30, 60, 27, 27), "center_y"),
        (lambda c: editing.rect_mask(64, 30, 30, 65, 20), "crop_x"),
        (lambda c: editing.rect_mask(64, 30, 30, 20, 0), "crop_y"),
    ],
)
def test_value_errors_name_the_parameter(
    call: Callable[[np.ndarray], object], name: str, edit_codes: np.ndarray
) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: "):
        call(edit_codes)


# --------------------------------------------------------------------------- declarations


class FakeBundle:
    """Just what the declaration API reads from a ModelBundle."""

    def __init__(
        self, num_layers: int = 8, w_dim: int = 16, resolution: int = 32, path=None
    ) -> None:
        self.num_layers, self.w_dim, self.resolution, self.path = (
            num_layers,
            w_dim,
            resolution,
            path,
        )
        self.code_shape = (num_layers, w_dim)
        self.perceptual = None


def _identity_op(*params: Param, **kwargs) -> EditOperation:
    def run(ctx, inputs, values) -> EditResult:
        return EditResult(inputs["codes"], info=dict(values))

    return EditOperation(
        "identity",
        "Identity",
        "Returns its input.",
        InputKind.CODES,
        params,
        run,
        Layout.BATCH,
        **kwargs,
    )


def test_param_defaults_and_bounds_can_depend_on_the_model() -> None:
    p = Param(
        "center", ParamType.INT, lambda b: b.resolution // 2, min=0, max=lambda b: b.resolution - 1
    )
    bundle = FakeBundle(resolution=64)
    assert p.default_for(bundle) == 32 and p.bounds_for(bundle) == (0, 63)
    assert p.default_for(None) is None and p.bounds_for(None) == (0, None)
    assert p.option_name == "--center" and p.display_label == "center"


@pytest.mark.parametrize(
    ("param", "value", "match"),
    [
        (Param("n", ParamType.INT, 1, min=0, max=5), 6, r"^n: must be in \[0, 5\], got 6"),
        (Param("n", ParamType.INT, 1), 1.5, "^n: expected an integer"),
        (Param("n", ParamType.INT, 1), True, "^n: expected an integer"),
        (Param("x", ParamType.FLOAT, 0.0), "abc", "^x: expected a number"),
        (Param("x", ParamType.FLOAT, 0.0), float("inf"), "^x: must be a finite number"),
        (Param("flag", ParamType.BOOL, False), "yes", "^flag: expected true or false"),
        (
            Param("mode", ParamType.CHOICE, "a", choices=("a", "b")),
            "c",
            "^mode: must be one of a, b",
        ),
        (
            Param("layers", ParamType.LAYERS),
            "0-8",
            r"^layers: layer indices \[8\] out of range 0..7",
        ),
        (Param("layers", ParamType.LAYERS), "2-1", "^layers: invalid layer range"),
        (Param("text", ParamType.STRING, ""), 3, "^text: expected text"),
        (
            Param("boundary", ParamType.BOUNDARY),
            "no-such-boundary",
            "^boundary: 'no-such-boundary' is neither",
        ),
    ],
)
def test_resolve_params_errors_name_the_parameter(param: Param, value: object, match: str) -> None:
    op = _identity_op(param)
    with pytest.raises(ParamError, match=match) as info:
        op.resolve_params({param.name: value}, FakeBundle())
    assert info.value.param == param.name


def test_resolve_params_fills_defaults_and_converts() -> None:
    op = _identity_op(
        Param("n", ParamType.INT, 3),
        Param("x", ParamType.FLOAT, 0.5),
        Param("layers", ParamType.LAYERS),
        Param("more", ParamType.LAYERS, "all"),
        Param("tag", ParamType.STRING, "t"),
    )
    got = op.resolve_params({"n": 4.0, "layers": "0,2-3"}, FakeBundle())
    assert got == {"n": 4, "x": 0.5, "layers": [0, 2, 3], "more": list(range(8)), "tag": "t"}
    with pytest.raises(ParamError, match="^bogus: unknown parameter"):
        op.resolve_params({"bogus": 1}, FakeBundle())


def test_required_parameter_and_cross_validation() -> None:
    def validate(values: dict, bundle: object) -> None:
        if values["a"] > values["b"]:
            raise ParamError("b", "must be >= a")

    op = _identity_op(
        Param("a", ParamType.INT, 0), Param("b", ParamType.INT, required=True), validate=validate
    )
    with pytest.raises(ParamError, match="^b: a value is required"):
        op.resolve_params({}, FakeBundle())
    with pytest.raises(ParamError, match="^b: must be >= a"):
        op.resolve_params({"a": 2, "b": 1}, FakeBundle())


def test_boundary_param_checks_the_model(tmp_path: Path) -> None:
    from idinvert.core.boundaries import save_boundary

    op = _identity_op(Param("boundary", ParamType.BOUNDARY, required=True))
    np.save(tmp_path / "plain.npy", np.ones((1, 8, 16), np.float32))
    got = op.resolve_params({"boundary": str(tmp_path / "plain.npy")}, FakeBundle())["boundary"]
    assert isinstance(got, Boundary) and got.direction.shape == (8, 16) and got.layers == []
    save_boundary(
        Boundary("wide", np.ones((8, 32), np.float32), [0]), tmp_path / "wide.safetensors"
    )
    with pytest.raises(
        ParamError,
        match=r"^boundary: boundary 'wide' has shape \[8, 32\] but this model needs \[8, 16\]",
    ):
        op.resolve_params({"boundary": str(tmp_path / "wide.safetensors")}, FakeBundle())
    folder = tmp_path / "model" / "boundaries"
    folder.mkdir(parents=True)
    save_boundary(
        Boundary("smile", np.ones((1, 16), np.float32), [0, 9]), folder / "smile.safetensors"
    )
    bundle = FakeBundle(path=tmp_path / "model")
    assert op.param("boundary").choices_for(bundle) == ["smile"]
    with pytest.raises(ParamError, match=r"default layers \[9\] are outside 0..7"):
        op.resolve_params({"boundary": "smile"}, bundle)


def test_declaration_mistakes_fail_at_definition() -> None:
    with pytest.raises(ValueError, match="snake_case"):
        Param("Center-X", ParamType.INT, 0)
    with pytest.raises(ValueError, match="reserved"):
        Param("model", ParamType.STRING, "")
    with pytest.raises(ValueError, match="needs choices"):
        Param("mode", ParamType.CHOICE, "a")
    with pytest.raises(ParamError, match="must be in"):
        Param("n", ParamType.INT, 10, min=0, max=5)
    with pytest.raises(ValueError, match="lowercase"):
        _identity_op().__class__("Bad Name", "t", "d", InputKind.CODES, (), lambda *a: None)
    with pytest.raises(ValueError, match="input-clashing"):
        EditOperation(
            "x", "t", "d", InputKind.CODES, (Param("codes", ParamType.INT, 0),), lambda *a: None
        )


def test_check_inputs_names_the_slot() -> None:
    bundle = FakeBundle()
    two = EditOperation("pair", "t", "d", InputKind.TWO_CODES, (), lambda *a: None)
    good = np.zeros((2, 8, 16), np.float32)
    with pytest.raises(InputError, match=r"^dst: has 1 code\(s\) but src has 2") as info:
        check_inputs(two.inputs, EditInputs({"src": good, "dst": good[:1]}), bundle)
    assert info.value.slot == "dst"
    with pytest.raises(InputError, match=r"^src: codes have per-code shape \[8, 12\]"):
        check_inputs(two.inputs, EditInputs({"src": good[:, :, :12], "dst": good}), bundle)
    with pytest.raises(InputError, match="^dst: this input is missing"):
        check_inputs(two.inputs, EditInputs({"src": good}), bundle)
    single = EditInputs({"src": good[0], "dst": good[0].astype(np.float64)})
    check_inputs(two.inputs, single, bundle)  # [L, D] → [1, L, D], float64 → float32
    assert single["src"].shape == (1, 8, 16) and single["dst"].dtype == np.float32
    images = EditOperation("img", "t", "d", InputKind.IMAGE_AND_CONTEXTS, (), lambda *a: None)
    with pytest.raises(InputError, match=r"^context: images must be uint8 \[N, 32, 32, 3\]"):
        check_inputs(
            images.inputs,
            EditInputs(
                {
                    "target": np.zeros((1, 32, 32, 3), np.uint8),
                    "context": np.zeros((1, 16, 16, 3), np.uint8),
                }
            ),
            bundle,
        )


def test_run_edit_checks_the_result() -> None:
    def bad(ctx, inputs, values) -> EditResult:
        return EditResult(np.zeros((2, 8, 15), np.float32))

    op = EditOperation(
        "bad", "t", "d", InputKind.CODES, (), bad, Layout.BATCH, plugin="some-plugin"
    )
    with pytest.raises(
        EditError, match=r"operation 'bad' \(plugin some-plugin\) returned codes \[2, 8, 15\]"
    ):
        run_edit(op, FakeBundle(), EditInputs({"codes": np.zeros((2, 8, 16), np.float32)}))
    ok = run_edit(
        _identity_op(Param("n", ParamType.INT, 2)),
        FakeBundle(),
        EditInputs({"codes": np.zeros((8, 16))}),
    )
    assert ok.codes.shape == (1, 8, 16) and ok.codes.dtype == np.float32
    assert ok.params == {"n": 2} and ok.item_names() == ["000"]


def test_the_layout_is_declared_once_on_the_operation() -> None:
    codes = EditInputs({"codes": np.zeros((2, 8, 16), np.float32)})
    result = run_edit(_identity_op(), FakeBundle(), codes)
    assert result.layout is Layout.BATCH

    def states_its_own(ctx, inputs, values) -> EditResult:  # plugins written before: accepted
        return EditResult(inputs["codes"][:, None], Layout.SEQUENCES)

    op = EditOperation("older", "t", "d", "codes", (), states_its_own, "batch")
    assert run_edit(op, FakeBundle(), codes).layout is Layout.SEQUENCES


def test_layers_left_at_none_arrive_as_a_list(tmp_path: Path) -> None:
    """``None`` (no value, no default) never reaches ``run``: all layers, or the layers of the
    operation's boundary parameter when that boundary declares some."""
    op = _identity_op(Param("layers", "layers", None))
    assert op.resolve_params({}, FakeBundle())["layers"] == list(range(8))
    assert op.resolve_params({"layers": "2-3"}, FakeBundle())["layers"] == [2, 3]
    with_boundary = _identity_op(
        Param("boundary", "boundary", required=True), Param("layers", "layers", None)
    )
    np.save(tmp_path / "plain.npy", np.ones((1, 8, 16), np.float32))
    plain = with_boundary.resolve_params({"boundary": str(tmp_path / "plain.npy")}, FakeBundle())
    assert plain["layers"] == list(range(8))  # the boundary has no layers of its own
    own = Boundary("b", np.ones((1, 16), np.float32), [1, 4])
    assert with_boundary.resolve_params({"boundary": own}, FakeBundle())["layers"] == [1, 4]
    given = {"boundary": own, "layers": [0]}
    assert with_boundary.resolve_params(given, FakeBundle())["layers"] == [0]


def test_boundary_files_go_through_the_one_reader(tmp_path: Path) -> None:
    """A parameter's boundary file is read by ``core.boundaries`` (official ``.npy`` with the
    restricted unpickler, plain arrays, our ``.safetensors``); unknown names list the model's."""
    op = _identity_op(Param("boundary", "boundary", required=True))
    official = np.empty((), dtype=object)
    official[()] = {"boundary": np.ones((1, 8, 16)), "meta_data": {"manipulate_layers": "2-3"}}
    np.save(tmp_path / "age.npy", official, allow_pickle=True)
    got = op.resolve_params({"boundary": str(tmp_path / "age.npy")}, FakeBundle())["boundary"]
    assert got.layers == [2, 3] and got.source == "official age.npy"
    with pytest.raises(ParamError, match=r"neither a boundary of this model \(available: none\)"):
        op.resolve_params({"boundary": "smile"}, FakeBundle())
    with pytest.raises(ParamError, match="expected a boundary name or file, got 3"):
        op.resolve_params({"boundary": 3}, FakeBundle())
