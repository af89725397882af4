"""The demo's caps and messages under abusive ``gradio_client`` calls: every endpoint (plugin
operations included) holds the server's limits, answers in words a web visitor understands
(no server paths, no command-line flags) and logs expected errors without a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from plugins_fixtures import launch_demo, random_photos  # noqa: E402

MAX_STEPS = 20


@pytest.fixture(scope="module")
def server(demo_model_dir):
    from idinvert.demo.service import DemoLimits

    limits = DemoLimits(
        max_steps=MAX_STEPS,
        default_steps=2,
        max_pixels=1_000_000,
        max_contexts=2,
        max_result_images=12,
        concurrency=2,
    )
    blocks, url = launch_demo(demo_model_dir, limits)
    yield blocks, url
    blocks.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("abuse")
    out = random_photos(root, {"photo": (40, 40), "tiny": (12, 12), "wide": (30, 80)}, seed=5)
    frames = [Image.new("RGB", (40, 40), c) for c in ("red", "blue", "green")]
    out["gif"] = root / "anim.gif"
    frames[0].save(out["gif"], save_all=True, append_images=frames[1:])
    out["text"] = root / "notes.png"
    out["text"].write_text("not an image")
    out["big"] = root / "big.png"
    Image.new("L", (1500, 1000)).save(out["big"])  # 1.5 MP > the 1 MP cap
    return out


def _message(exc: pytest.ExceptionInfo) -> str:
    return str(exc.value)


def _assert_web_words(message: str) -> None:
    assert "/tmp" not in message and "gradio/" not in message, message
    assert " --" not in message and "`--" not in message, message
    assert "Traceback" not in message, message


def test_every_tab_before_inversion_says_what_to_do(server):
    _, url = server
    c = Client(url, verbose=False)
    calls = {
        "/quick_edit": (0.5, 0.0),
        "/edit_manipulate": ("smile", [], -1, 1, 3, False),
        "/edit_interpolate": (None, 3),
        "/edit_mix": (None, ["6"]),
        "/edit_diffuse": ([], 16, 16, 10, 10, 1, 0.01, 0.0),
    }
    for name, args in calls.items():
        with pytest.raises(AppError, match="invert a photo or draw a random sample first") as exc:
            c.predict(*args, api_name=name)
        _assert_web_words(_message(exc))


@pytest.mark.parametrize(
    ("api_name", "args", "pattern"),
    [
        # optimisation steps of a plugin operation: declared up to 100000, capped at 20
        ("/edit_diffuse", ([], 16, 16, 10, 10, MAX_STEPS + 1, 0.01, 0.0), "maximum|between"),
        ("/edit_diffuse", ([], 16, 16, 10, 10, 2, 1e9, 0.0), "maximum|between"),
        ("/edit_diffuse", ([], 16, 16, 10, 10, 2, 0.01, -1.0), "minimum|between"),
        ("/edit_interpolate", (None, 500), "maximum|between"),
        ("/edit_manipulate", ("smile", [], -1, 1, 10_000, False), "maximum|between"),
        ("/edit_manipulate", ("smile", [], -1e9, 1, 3, False), "minimum|between"),
        ("/edit_manipulate", ("no-such-boundary", [], -1, 1, 3, False), "boundary"),
        ("/edit_manipulate", ("smile", ["99"], -1, 1, 3, False), "layer"),
        ("/quick_edit", (1e9, 0.0), "age: 1000000000.0 is greater than the maximum of 3"),
        ("/quick_edit", (0.0, -4), "smile: -4(.0)? is less than the minimum of -3"),
    ],
)
def test_abusive_parameters_are_refused_in_words(server, api_name, args, pattern):
    _, url = server
    c = Client(url, verbose=False)
    c.predict(1, api_name="/sample")
    with pytest.raises(AppError, match=pattern) as exc:
        c.predict(*args, api_name=api_name)
    _assert_web_words(_message(exc))
    assert c.predict(2, api_name="/sample")[3].startswith("Random sample")  # still serving


def test_caps_on_contexts_and_result_size(server, files):
    _, url = server
    c = Client(url, verbose=False)
    c.predict(1, api_name="/sample")
    three = [handle_file(str(files["photo"]))] * 3
    with pytest.raises(AppError, match="at most 2 context images"):
        c.predict(three, 16, 16, 10, 10, 1, 0.01, 0.0, api_name="/edit_diffuse")
    # 13 frames > 12 images per edit (within the step cap, beyond the result cap)
    with pytest.raises(AppError, match="at most 12"):
        c.predict("smile", [], -1, 1, 13, False, api_name="/edit_manipulate")
    gallery, _gif, codes = c.predict("smile", [], -1, 1, 12, False, api_name="/edit_manipulate")
    assert len(gallery) == 12 and np.load(codes).shape == (1, 12, 8, 16)
    assert [g["caption"] for g in gallery][:2] == ["frame 1 of 12", "frame 2 of 12"]


def test_the_server_advertises_capped_ranges(server):
    """The controls the browser gets already hold the caps (a plugin's declared 100000 steps
    becomes the server's 20; expert numbers are number boxes)."""
    blocks, _ = server
    config = blocks.get_config_file()
    by_label: dict[str, list[dict]] = {}
    for comp in config["components"]:
        props = comp.get("props", {})
        by_label.setdefault(props.get("label"), []).append({"type": comp["type"], **props})
    steps = [p for p in by_label["steps"] if p["type"] == "slider"]
    assert steps and all(p["maximum"] <= MAX_STEPS for p in steps)
    assert by_label["lr"][0]["type"] == "number"
    assert by_label["perceptual weight"][0]["type"] == "number"
    assert by_label["Learning rate"][0]["type"] == "number"


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        ((MAX_STEPS + 1,), "maximum|between|steps"),
        ((-1,), "minimum|between|steps"),
        ((2, False, 100.0), "Learning rate: 100.0 is greater than the maximum of 1"),
        ((2, False, 0.01, -1.0), "Perceptual .*less than the minimum of 0"),
        ((2, False, 0.01, 5e-5, 1e300), "Domain .*greater than the maximum of 100"),
    ],
)
def test_invert_refuses_out_of_range_settings(server, files, args, pattern):
    _, url = server
    with pytest.raises(AppError, match=pattern) as exc:
        Client(url, verbose=False).predict(
            handle_file(str(files["photo"])), *args, api_name="/invert"
        )
    _assert_web_words(_message(exc))


def test_invert_with_expert_settings_and_streamed_final_values(server, files):
    _, url = server
    out = Client(url, verbose=False).predict(
        handle_file(str(files["photo"])), 3, False, 0.02, 0.0, 1.0, api_name="/invert"
    )
    metrics, curve = out[3], out[4]
    assert "Final losses: total" in metrics and "domain" in metrics
    finals = metrics.split("Final losses")[1].split("⚠️")[0]
    assert "perceptual" not in finals  # weight 0: off
    assert curve["columns"] == ["step", "loss", "term"]
    assert curve["datatypes"]["step"] == "quantitative"  # a numeric axis, not categories
    assert sorted({row[0] for row in curve["data"]}) == [0, 1, 2]
    assert {row[2] for row in curve["data"]} == {"total", "pixel", "domain"}


@pytest.mark.parametrize(
    ("which", "pattern"),
    [
        ("text", "not a readable image"),
        ("big", "1500×1000 pixels; this demo accepts up to 1 MP"),
    ],
)
def test_bad_uploads_are_caught_when_they_arrive(server, files, which, pattern):
    _, url = server
    c = Client(url, verbose=False)
    note = c.predict(handle_file(str(files[which])), api_name="/check_upload")
    assert "⚠️" in note and pytest.importorskip("re").search(pattern, note), note
    _assert_web_words(note)
    with pytest.raises(AppError, match=pattern) as exc:
        c.predict(handle_file(str(files[which])), 1, False, api_name="/invert")
    _assert_web_words(_message(exc))


def test_upload_notes_for_gifs_tiny_and_stretched_images(server, files):
    _, url = server
    c = Client(url, verbose=False)
    assert "first frame" in c.predict(handle_file(str(files["gif"])), api_name="/check_upload")
    tiny = c.predict(handle_file(str(files["tiny"])), api_name="/check_upload")
    assert "small (12×12)" in tiny and "upscaled" in tiny
    assert "stretched" in c.predict(handle_file(str(files["wide"])), api_name="/check_upload")
    assert c.predict(handle_file(str(files["photo"])), api_name="/check_upload") == ""
    # the same notes stay with the result
    assert "upscaled" in c.predict(handle_file(str(files["tiny"])), 1, api_name="/invert")[3]
    assert "first frame" in c.predict(handle_file(str(files["gif"])), 1, api_name="/invert")[3]


def test_user_errors_leave_one_log_line_and_no_traceback(server, files, capfd, caplog):
    import logging

    _, url = server
    c = Client(url, verbose=False)
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="idinvert.demo.app"):
        for _ in range(3):
            with pytest.raises(AppError):
                c.predict(handle_file(str(files["text"])), 1, False, api_name="/invert")
        with pytest.raises(AppError):
            c.predict(0.0, 0.0, api_name="/quick_edit")
    _out, err = capfd.readouterr()
    assert "Traceback" not in err
    lines = [r for r in caplog.records if r.name == "idinvert.demo.app"]
    assert len(lines) == 4 and all("user error" in r.getMessage() for r in lines)
    assert all(r.exc_info is None for r in lines)
