"""The demo's work without a server: messages for the web, caps on declared parameters, the
model list, result files' lifetime, the loss table."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from idinvert.demo import service


def test_web_message_drops_flags_paths_and_command_hints():
    msg = service.web_message(
        "/tmp/gradio/ab12/photo.jpg: no face found (dlib's detector finds faces of about 40 px); "
        "pass --no-align to invert the whole image"
    )
    assert msg.startswith("photo.jpg: no face found") and 'untick "Align face"' in msg
    assert "/tmp" not in msg and "--" not in msg
    hint = "no perceptual network (--perceptual-weight 0) or add one (idinvert convert --x)"
    assert service.web_message(hint) == "no perceptual network or add one"
    words = {"src": "your photo", "dst": "the second image"}
    text = "Walk from each --src code to the paired --dst code, from --start to --end."
    assert service.web_message(text, words) == (
        "Walk from each your photo code to the paired the second image code, from “start” to “end”."
    )


def test_operation_errors_name_the_control_in_words():
    from idinvert.core.edit import InputError, ParamError
    from idinvert.core.plugins import get_edit_operation

    op = get_edit_operation("diffuse")
    msg = service.edit_message(op, ParamError("center_x", "must be in [0, 31], got 40"))
    assert msg == "center x: must be in [0, 31], got 40"
    msg = service.edit_message(op, InputError("context", "no items given"))
    assert msg == "context image: no items given"


def test_declared_step_ranges_are_clipped_by_the_server(tiny_model_dir):
    from idinvert.core.plugins import get_edit_operation
    from idinvert.demo.controls import is_expert_number
    from idinvert.hub.api import load_model

    bundle = load_model(str(tiny_model_dir), "cpu")
    limits = service.DemoLimits(max_steps=30)
    diffuse = get_edit_operation("diffuse")
    assert diffuse.param("steps").max == 100_000
    assert service.param_bounds(diffuse.param("steps"), bundle, limits) == (0, 30)
    assert service.param_bounds(diffuse.param("center_x"), bundle, limits) == (0, 31)
    with pytest.raises(service.DemoError, match="steps must be between 0 and 30 on this demo"):
        service.check_params(diffuse, {"steps": 31}, bundle, limits)
    service.check_params(diffuse, {"steps": 30}, bundle, limits)
    # a minimum above the cap wins (interpolation needs two frames even with --max-steps 0)
    interpolate = get_edit_operation("interpolate")
    zero = service.DemoLimits(max_steps=0)
    assert service.param_bounds(interpolate.param("steps"), bundle, zero) == (2, 2)
    lr, weight = diffuse.param("lr"), diffuse.param("perceptual_weight")
    assert is_expert_number(lr, 1e-8, 10.0, 0.01)
    assert is_expert_number(weight, 0.0, 1.0, 5e-5)
    start = get_edit_operation("manipulate").param("start")
    assert not is_expert_number(start, -10.0, 10.0, -3.0)


def test_model_list_parsing():
    assert service.parse_models("ffhq256=owner/a@rev, tower256=owner/b@rev,faces64") == [
        ("ffhq256", "owner/a@rev"),
        ("tower256", "owner/b@rev"),
        ("faces64", "faces64"),
    ]
    assert service.parse_models("/models/mine/") == [("mine", "/models/mine/")]
    with pytest.raises(ValueError, match="appears twice"):
        service.parse_models("a=x,a=y")
    with pytest.raises(ValueError, match="empty"):
        service.parse_models(" , ")


def test_catalog_loads_each_model_once_even_when_asked_at_once():
    from concurrent.futures import ThreadPoolExecutor

    loads = []

    def load(ref):
        loads.append(ref)
        time.sleep(0.05)
        return f"bundle of {ref}"

    catalog = service.ModelCatalog([("a", "ref-a"), ("b", "ref-b")], load)  # type: ignore[arg-type]
    assert catalog.default == "a" and not catalog.is_loaded("b")
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda _: catalog.get("b").bundle, range(6)))
    assert got == ["bundle of ref-b"] * 6 and loads == ["ref-b"]
    with pytest.raises(service.DemoError, match="unknown model 'c'"):
        catalog.get("c")


def _age(path, seconds: float) -> None:
    """Make ``path`` and everything in it look ``seconds`` old."""
    past = time.time() - seconds
    for p in [path, *path.rglob("*")]:
        os.utime(p, (past, past))


def test_result_files_live_while_their_session_needs_them(tmp_path):
    files = service.ResultFiles(tmp_path / "results", idle_s=100, grace_s=10)
    session = {"files": "s1"}
    first, second = files.new_result(session), files.new_result(session)
    assert first != second and first.parent == second.parent == tmp_path / "results" / "s1"
    (second / "image.png").write_bytes(b"x")
    files.release(session)  # expired, but a file is only just written: kept (grace)
    assert second.is_dir()
    _age(second.parent, 50)
    with files.in_use(session):  # an action of this session is running
        files.release(session)
        assert files.sweep(0) == 0 and second.is_dir()
    files.release(session)
    assert not second.parent.exists()
    other = files.new_result({"files": "s2"})
    assert files.sweep() == 0  # fresh
    _age(other.parent, 101)
    assert files.sweep() == 1 and not other.parent.exists()
    assert files.session_dir({"files": "../escape"}).parent == tmp_path / "results"


def test_upload_notes(tmp_path):
    from PIL import Image

    limits = service.DemoLimits(max_pixels=10_000, max_upload_mb=1)
    Image.new("RGB", (20, 20)).save(tmp_path / "small.png")
    frames = [Image.new("RGB", (64, 64), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (200, 100)).save(tmp_path / "big.png")
    (tmp_path / "huge.bin").write_bytes(b"0" * (2 * 2**20))
    assert "upscaled" in service.upload_notes(tmp_path / "small.png", limits, 32)[0]
    assert (
        "2 frames: the first frame is used"
        in service.upload_notes(tmp_path / "anim.gif", limits, 32)[0]
    )
    with pytest.raises(service.DemoError, match="200×100 pixels"):
        service.upload_notes(tmp_path / "big.png", limits, 32)
    with pytest.raises(service.DemoError, match="up to 1 MB"):
        service.upload_notes(tmp_path / "huge.bin", limits, 32)
    assert service.upload_notes(None, limits, 32) == []


def test_loss_table_is_numeric_weighted_and_skips_terms_that_are_off():
    from idinvert.demo.app import _loss_frame

    empty = _loss_frame({})
    assert str(empty["step"].dtype) == "int64" and str(empty["loss"].dtype) == "float64"
    history = {
        "total": np.array([[3.0], [2.0]]),
        "pixel": np.array([[1.0], [0.5]]),
        "perceptual": np.zeros((2, 1)),
        "domain": np.array([[0.5], [0.25]]),
    }
    frame = _loss_frame(history, {"domain": 2.0, "perceptual": 5e-5})
    assert list(frame["term"].unique()) == ["total", "pixel", "domain × 2"]
    assert frame[frame.term == "domain × 2"]["loss"].tolist() == [1.0, 0.5]
    assert frame["step"].tolist()[:2] == [0, 1]


def test_threads_and_precision_of_the_computations(monkeypatch):
    import torch

    from idinvert.demo.app import make_compute
    from idinvert.demo.compute import ComputeThread, InlineCompute

    monkeypatch.setattr(service.os, "cpu_count", lambda: 8)
    assert service.DemoLimits().threads_per_computation() == 8  # one compute thread: all
    spread = service.DemoLimits(compute_thread=False, concurrency=2)
    assert spread.threads_per_computation() == 4
    assert service.DemoLimits(concurrency=16, compute_thread=False).threads_per_computation() == 1
    assert service.DemoLimits(torch_threads=3).threads_per_computation() == 3
    monkeypatch.setattr(service.os, "cpu_count", lambda: None)
    assert service.DemoLimits().threads_per_computation() == 1
    compute = make_compute(service.DemoLimits(torch_threads=1))
    assert isinstance(compute, ComputeThread) and compute.call(torch.get_num_threads) == 1
    assert isinstance(make_compute(service.DemoLimits(compute_thread=False)), InlineCompute)
    monkeypatch.setenv("SPACE_ID", "someone/idinvert")  # ZeroGPU: the GPU comes with the call
    monkeypatch.setitem(__import__("sys").modules, "spaces", object())
    assert isinstance(make_compute(service.DemoLimits()), InlineCompute)

    cpu = torch.device("cpu")
    assert service.DemoLimits(precision="fp32").precision_for(cpu) == "fp32"
    assert service.DemoLimits(precision="bf16").precision_for(cpu) == "bf16"
    monkeypatch.setattr(service, "native_bf16", lambda device: False)
    assert service.DemoLimits().precision_for(cpu) == "fp32"
    monkeypatch.setattr(service, "native_bf16", lambda device: True)
    assert service.DemoLimits().precision_for(cpu) == "bf16"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        service.DemoLimits(precision="fp16")


def test_a_batch_of_inversions_gives_each_visitor_their_own_result(tiny_model_dir):
    from idinvert.core.modeldir import load_model_dir

    bundle = load_model_dir(tiny_model_dir)
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    seen: dict[int, list] = {0: [], 1: [], 2: []}

    def watcher(i: int):
        def on_step(info):
            assert info.offset == 0 and info.losses["total"].shape == (1,)
            seen[i].append(float(info.losses["pixel"][0]))
            if i == 1 and info.step == 2:
                raise service.InversionAbandoned  # visitor 1 left; the others go on

        return on_step

    batch = service.invert_images(bundle, images, 4, [watcher(i) for i in range(3)])
    assert len(seen[0]) == len(seen[2]) == 4 and len(seen[1]) == 2
    for i, image in enumerate(images):
        alone = service.invert_image(bundle, image, 4)
        out = batch[i]
        assert out.codes.shape == (1, *alone.codes.shape[1:])
        np.testing.assert_allclose(out.codes, alone.codes, atol=1e-4)
        np.testing.assert_allclose(out.history["pixel"], alone.history["pixel"], rtol=1e-4)
        assert seen[i][0] == pytest.approx(float(alone.history["pixel"][0, 0]), rel=1e-4)
        assert out.mse == pytest.approx(alone.mse, rel=1e-3)
    with pytest.raises(service.InversionAbandoned):  # nobody left: the run stops

        def gone(info):
            raise service.InversionAbandoned

        service.invert_images(bundle, images[:2], 4, [gone, gone])
    with pytest.raises(ValueError, match="one callback"):
        service.invert_images(bundle, images, 4, [None])
