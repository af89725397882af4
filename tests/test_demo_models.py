"""Several models side by side (``IDINVERT_MODELS``): a selector, each model loaded lazily and
once, examples and edits following the selected model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from plugins_fixtures import launch_demo, save_second_model  # noqa: E402


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory):
    return save_second_model(tmp_path_factory.mktemp("other"))


@pytest.fixture(scope="module")
def two_models(demo_model_dir, other_model_dir, tmp_path_factory):
    """The demo with ``small`` (32 px, smile/age) and ``other`` (16 px, tilt); ``other`` has
    cached examples of its domain, ``small`` none. Yields (blocks, url, loads)."""
    from idinvert.demo.examples import _cache_dir
    from idinvert.demo.service import DemoLimits
    from idinvert.hub import api

    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("cache")
    mp.setenv("IDINVERT_CACHE", str(cache))
    mp.setenv("IDINVERT_MODELS", f"small={demo_model_dir},other={other_model_dir}")
    loads: list[str] = []
    real = api.load_model

    def counting(ref, *args, **kwargs):
        loads.append(str(ref))
        return real(ref, *args, **kwargs)

    mp.setattr(api, "load_model", counting)
    folder = _cache_dir(real(str(other_model_dir), "cpu"))
    folder.mkdir(parents=True)
    for i in range(6):
        Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(folder / f"example_{i}.png")
    blocks, url = launch_demo(None, DemoLimits(max_steps=5, default_steps=1), own_examples=True)
    yield blocks, url, loads
    blocks.close()
    mp.undo()


def test_models_are_offered_and_loaded_lazily_once(two_models):
    blocks, url, loads = two_models
    app = blocks.demo_app
    assert app.catalog.labels == ["small", "other"]
    assert len(loads) == 1 and not app.catalog.is_loaded("other")  # only the default so far
    c = Client(url, verbose=False)
    api = c.view_api(return_format="dict")["named_endpoints"]
    assert "/select_model" in api
    names = [p["parameter_name"] for p in api["/invert"]["parameters"]]
    assert names[:3] == ["image", "steps", "align"] and names[-1] == "model"
    small = c.predict(1, "small", api_name="/sample")
    other = c.predict(1, "other", api_name="/sample")
    assert Image.open(small[2]).size == (32, 32) and Image.open(other[2]).size == (16, 16)
    assert "other" in other[3]
    c.predict(2, "other", api_name="/sample")
    Client(url, verbose=False).predict(3, "other", api_name="/sample")
    assert len(loads) == 2  # each model loaded once, whoever asks


def test_edits_and_examples_follow_the_selected_model(two_models):
    blocks, url, _ = two_models
    app = blocks.demo_app
    updates = app.select_model("other", None)
    assert "other" in updates[0] and "16×16" in updates[0]
    examples_update = updates[10]
    assert len(examples_update["samples"]) == 6 and examples_update["visible"] is True
    choices = [u.get("choices") for u in updates if isinstance(u, dict) and u.get("choices")]
    assert ["tilt"] in choices  # the manipulate tab's boundaries
    assert [str(i) for i in range(6)] in choices  # layer pickers: 6 layers at 16 px
    back = app.select_model("small", None)
    assert back[10]["visible"] is False  # small has no examples

    c = Client(url, verbose=False)
    c.predict("other", api_name="/select_model")
    c.predict(4, "other", api_name="/sample")
    # quick edit: the first slider now moves along "tilt"
    moved, _ = c.predict(2.0, *[0.0] * (app.n_sliders - 1), api_name="/quick_edit")
    still, _ = c.predict(*[0.0] * app.n_sliders, api_name="/quick_edit")
    assert Image.open(moved).size == (16, 16)
    assert not np.array_equal(np.asarray(Image.open(moved)), np.asarray(Image.open(still)))
    gallery, _gif, codes = c.predict("tilt", [], -1, 1, 3, False, api_name="/edit_manipulate")
    assert len(gallery) == 3 and np.load(codes).shape[-2:] == (6, 16)
