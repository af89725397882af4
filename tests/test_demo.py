"""The Gradio demo, launched for real on 127.0.0.1 and driven with ``gradio_client``."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from plugins_fixtures import launch_demo, random_photos  # noqa: E402


@pytest.fixture(scope="module")
def server(demo_model_dir, tmp_path_factory):
    from idinvert.demo.service import DemoLimits

    limits = DemoLimits(max_steps=20, default_steps=3, max_pixels=4_000_000, concurrency=8)
    blocks, url = launch_demo(demo_model_dir, limits)
    yield url
    blocks.close()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("photos")
    paths = random_photos(root, {name: (48, 40) for name in ("a", "b", "c")}, seed=1)
    text = root / "notes.png"
    text.write_text("not an image")
    paths["text"] = text
    huge = root / "huge.png"
    Image.new("L", (3000, 2000)).save(huge)  # 6 MP > the test server's 4 MP cap
    paths["huge"] = huge
    return paths


def _client(url: str) -> Client:
    return Client(url, verbose=False)


def test_api_names_are_documented(server):
    api = _client(server).view_api(return_format="dict")["named_endpoints"]
    for name in (
        "/invert",
        "/sample",
        "/quick_edit",
        "/edit_interpolate",
        "/edit_manipulate",
        "/edit_diffuse",
        "/edit_mix",
    ):
        assert name in api, name
    params = [p["parameter_name"] for p in api["/edit_manipulate"]["parameters"]]
    assert params[:3] == ["boundary", "layers", "start"]


def test_invert_then_every_edit(server, photos):
    c = _client(server)
    out = c.predict(handle_file(str(photos["a"])), 3, False, api_name="/invert")
    target, enc, final, metrics, _curve, codes_path, edited, full = out
    assert full is None  # not aligned
    assert Image.open(final).size == (32, 32)
    assert "MSE" in metrics
    assert np.load(codes_path).shape == (1, 8, 16)
    before = np.asarray(Image.open(final))
    # quick edit: re-synthesis only, and the image changes with the slider
    moved = np.asarray(Image.open(c.predict(2.0, 0.0, api_name="/quick_edit")[0]))
    still = np.asarray(Image.open(c.predict(0.0, 0.0, api_name="/quick_edit")[0]))
    assert np.array_equal(still, before)
    assert not np.array_equal(moved, before)
    gallery, anim, codes = c.predict("smile", [], -2, 2, 5, False, api_name="/edit_manipulate")
    assert len(gallery) == 5 and np.load(codes).shape == (1, 5, 8, 16)
    assert Image.open(anim).format == "GIF"
    gallery, anim, codes = c.predict(handle_file(str(photos["b"])), 4, api_name="/edit_interpolate")
    assert np.load(codes).shape == (1, 4, 8, 16)
    gallery, anim, codes = c.predict(
        handle_file(str(photos["b"])), ["6", "7"], api_name="/edit_mix"
    )
    assert np.load(codes).shape == (1, 1, 8, 16)
    gallery, anim, codes = c.predict(
        [handle_file(str(photos["b"])), handle_file(str(photos["c"]))],
        16,
        16,
        10,
        10,
        2,
        0.01,
        0.0,
        api_name="/edit_diffuse",
    )
    assert np.load(codes).shape == (2, 8, 16)


def test_sample_gives_a_session_to_edit(server):
    c = _client(server)
    out = c.predict(3, api_name="/sample")
    assert np.load(out[5]).shape == (1, 8, 16)
    gallery, _anim, _codes = c.predict("age", [], -1, 1, 3, False, api_name="/edit_manipulate")
    assert len(gallery) == 3


@pytest.mark.parametrize(
    ("which", "message"),
    [("text", "not a readable image"), ("huge", "MP"), (None, "no image")],
)
def test_bad_uploads_give_specific_errors(server, photos, which, message):
    from gradio_client.exceptions import AppError

    c = _client(server)
    arg = handle_file(str(photos[which])) if which else None
    with pytest.raises(AppError, match=message):
        c.predict(arg, 2, False, api_name="/invert")
    # the server keeps serving
    assert c.predict(3, api_name="/sample")[3].startswith("Random sample")


def test_edit_before_invert_and_step_cap_are_errors(server, photos):
    from gradio_client.exceptions import AppError

    c = _client(server)
    with pytest.raises(AppError, match="invert a photo"):
        c.predict("smile", [], -2, 2, 5, False, api_name="/edit_manipulate")
    with pytest.raises(AppError, match="steps must be|greater than the maximum of 20"):
        c.predict(handle_file(str(photos["a"])), 10_000, False, api_name="/invert")
    c.predict(handle_file(str(photos["a"])), 1, False, api_name="/invert")
    with pytest.raises(AppError, match="crop"):  # a crop reaching outside the 32 px image
        c.predict(
            [handle_file(str(photos["b"]))], 30, 16, 20, 10, 1, 0.01, 0.0, api_name="/edit_diffuse"
        )


def test_eight_concurrent_clients(server, tmp_path, monkeypatch):
    import time

    from idinvert.demo import service
    from idinvert.demo.compute import ComputeThread

    sizes: list[int] = []
    submitted: list[object] = []
    real_invert, real_submit = service.invert_images, ComputeThread.submit_batched

    def counted(self, *args, **kwargs):
        submitted.append(args[0])
        return real_submit(self, *args, **kwargs)

    def recorded(bundle, images, *args):
        sizes.append(len(images))
        deadline = time.monotonic() + 10
        while len(sizes) == 1 and len(submitted) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)  # a slow first inversion: every other client's arrives meanwhile
        return real_invert(bundle, images, *args)

    monkeypatch.setattr(service, "invert_images", recorded)
    monkeypatch.setattr(ComputeThread, "submit_batched", counted)
    # distinct inputs: Gradio caches outputs by content hash, so identical concurrent results
    # would share one cache file; real users' results differ
    rng = np.random.default_rng(7)
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"p{i}.png")
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(paths[-1])

    def one(i: int) -> tuple:
        c = _client(server)
        out = c.predict(handle_file(str(paths[i])), 2, False, api_name="/invert")
        edited = c.predict(0.1 * (i + 1), 0.0, api_name="/quick_edit")[0]
        return np.load(out[5]).shape, Image.open(edited).size

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert results == [((1, 8, 16), (32, 32))] * 8
    # the inversions waiting for the compute thread ran as one batch (the first one waits
    # until all eight are submitted): at most two runs; each client got its own codes
    assert sum(sizes) == 8 and len(sizes) <= 2, sizes


def test_computations_share_one_thread_and_sliders_answer_during_an_inversion(
    server, photos, monkeypatch
):
    import threading
    import time

    from idinvert.demo import service

    threads: dict[str, set[str]] = {"invert": set(), "quick_edit": set(), "sample": set()}
    finished: dict[str, float] = {}
    real_invert, real_quick, real_sample = (
        service.invert_images,
        service.quick_edit,
        service.sample_code,
    )

    def slow_invert(bundle, images, steps, callbacks, *args):
        threads["invert"].add(threading.current_thread().name)

        def each_step(info):  # a slow model: 20 steps ≈ 1.6 s
            time.sleep(0.08)
            callbacks[0](info)

        out = real_invert(bundle, images, steps, [each_step], *args)
        finished["invert"] = time.monotonic()
        return out

    def quick(*args):
        threads["quick_edit"].add(threading.current_thread().name)
        return real_quick(*args)

    def sample(*args):
        threads["sample"].add(threading.current_thread().name)
        return real_sample(*args)

    monkeypatch.setattr(service, "invert_images", slow_invert)
    monkeypatch.setattr(service, "quick_edit", quick)
    monkeypatch.setattr(service, "sample_code", sample)
    slider_user = _client(server)
    slider_user.predict(5, api_name="/sample")
    with ThreadPoolExecutor(1) as pool:
        inversion = pool.submit(
            _client(server).predict, handle_file(str(photos["a"])), 20, False, api_name="/invert"
        )
        time.sleep(0.8)  # the inversion is running
        start = time.monotonic()
        slider_user.predict(0.5, 0.0, api_name="/quick_edit")
        finished["quick_edit"] = time.monotonic()
        inversion.result(timeout=60)
    assert finished["quick_edit"] < finished["invert"]  # it did not wait for the inversion
    assert finished["quick_edit"] - start < 1.0
    assert threads == {name: {"idinvert-compute"} for name in threads}


def test_a_cancelled_inversion_frees_the_compute_thread(server, photos, monkeypatch):
    import time

    from idinvert.demo import service

    steps_run: list[int] = []
    real_invert = service.invert_images

    def slow_invert(bundle, images, steps, callbacks, *args):
        def each_step(info):  # a slow model: 20 steps ≈ 4 s
            time.sleep(0.2)
            steps_run.append(info.step)
            callbacks[0](info)

        return real_invert(bundle, images, steps, [each_step], *args)

    monkeypatch.setattr(service, "invert_images", slow_invert)
    leaving, next_user = _client(server), _client(server)
    job = leaving.submit(handle_file(str(photos["a"])), 20, False, api_name="/invert")
    deadline = time.monotonic() + 10
    while not steps_run and time.monotonic() < deadline:
        time.sleep(0.05)
    assert steps_run, "the inversion did not start"
    job.cancel()
    time.sleep(0.3)
    start = time.monotonic()
    next_user.predict(handle_file(str(photos["b"])), 1, False, api_name="/invert")
    waited = time.monotonic() - start
    assert max(steps_run) < 20, steps_run  # the abandoned inversion stopped early
    assert waited < 2.5, waited  # and the next one did not wait for its ≈ 3.4 s left


def test_align_and_paste_back_real_photo(server):
    pytest.importorskip("dlib")
    from pathlib import Path

    photo = Path(__file__).parent / "data" / "astronaut.jpg"
    c = _client(server)
    out = c.predict(handle_file(str(photo)), 1, True, api_name="/invert")
    assert "aligned" in out[3]
    full = Image.open(out[7])
    assert full.size == Image.open(photo).size
    edited, pasted = c.predict(1.5, 0.0, api_name="/quick_edit")
    assert Image.open(pasted).size == full.size


def test_non_face_photo_with_alignment_is_a_clear_error(server):
    pytest.importorskip("dlib")
    from pathlib import Path

    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="no face"):
        _client(server).predict(
            handle_file(str(Path(__file__).parent / "data" / "chelsea.jpg")),
            1,
            True,
            api_name="/invert",
        )


def test_broken_plugins_show_a_banner_and_the_rest_works(monkeypatch, demo_model_dir, tmp_path):
    """A plugin failing at import and one raising in its hook: the app starts, names both in a
    visible banner, and the built-in operations still run."""
    from plugins_fixtures import SITE, purge_fixture_modules

    from idinvert.core import plugins
    from idinvert.demo.service import DemoLimits

    monkeypatch.syspath_prepend(str(SITE))
    monkeypatch.setenv(plugins.ALLOW_ENV, "fixture-broken-import,fixture-raises,fixture-good")
    purge_fixture_modules()
    plugins.reset_plugins()
    try:
        blocks, url = launch_demo(demo_model_dir, DemoLimits(max_steps=5, default_steps=1))
        try:
            config = blocks.get_config_file()
            texts = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
            assert "Some plugins failed to load" in texts
            assert "fixture-broken-import" in texts and "fixture-raises" in texts
            c = _client(url)
            api = c.view_api(return_format="dict")["named_endpoints"]
            assert "/edit_scale_codes" in api and "/edit_interpolate" in api
            c.predict(1, api_name="/sample")
            gallery, _anim, codes = c.predict(
                "smile", [], -1, 1, 2, False, api_name="/edit_manipulate"
            )
            assert len(gallery) == 2
        finally:
            blocks.close()
    finally:
        plugins.reset_plugins()
        purge_fixture_modules()


def test_every_input_kind_has_one_row_in_the_service_table():
    """Input kinds are acquired from demo/service.py's table (no branches in the UI): a row per
    kind, covering exactly its slots."""
    from idinvert.core.edit import InputKind
    from idinvert.demo.service import INPUT_SOURCES, SESSION, Upload

    assert set(INPUT_SOURCES) == set(InputKind)
    for kind, source in INPUT_SOURCES.items():
        assert list(source.slots) == [s.name for s in kind.slots], kind
        assert all(how == SESSION or isinstance(how, Upload) for how in source.slots.values())


def test_gather_inputs_from_session_and_uploads(demo_model_dir, photos):
    from idinvert.core.edit import InputKind
    from idinvert.demo.service import DemoError, DemoLimits, gather_inputs
    from idinvert.hub.api import load_model

    bundle = load_model(str(demo_model_dir), "cpu")
    limits = DemoLimits(max_contexts=1)
    session = {"codes": np.ones((1, 8, 16), np.float32), "image": np.zeros((32, 32, 3), np.uint8)}
    seen = []

    def invert_photo(image):
        seen.append(image.shape)
        return np.zeros((1, 8, 16), np.float32)

    second = [str(photos["b"])]
    got = gather_inputs(bundle, InputKind.TWO_CODES, session, second, limits, invert_photo)
    assert got["src"].sum() == 8 * 16 and got["dst"].shape == (1, 8, 16) and seen == [(32, 32, 3)]
    got = gather_inputs(
        bundle, InputKind.IMAGE_AND_CONTEXTS, session, [[str(photos["c"])]], limits, invert_photo
    )
    assert got["target"].shape == got["context"].shape == (1, 32, 32, 3)
    with pytest.raises(DemoError, match="at most 1 context images"):
        two = [[str(photos["b"]), str(photos["c"])]]
        gather_inputs(bundle, InputKind.IMAGE_AND_CONTEXTS, session, two, limits, invert_photo)
    with pytest.raises(DemoError, match="invert a photo or draw a random sample first"):
        gather_inputs(bundle, InputKind.CODES, None, [], limits, invert_photo)
