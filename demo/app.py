"""The Gradio app: invert a photo, look at the reconstruction, edit it with every registered
edit operation. UI only — the work is done by :mod:`idinvert.demo.service` (core + plugins).

API (``gradio_client``; every event has an ``api_name``; inputs added later are appended and
have defaults):

* ``/invert`` (image, steps, align, learning_rate, perceptual_weight, domain_weight[, model])
  → input, encoder and final images, metrics, loss curve, codes file, edited image, image
  pasted back into the photo (streamed: the loss curve grows while it runs)
* ``/sample`` (seed[, model]) → the same outputs for a random image of the model
* ``/quick_edit`` (one strength per boundary) → re-synthesized image, pasted-back image
* ``/edit_<operation>`` (operation parameters [+ second image / context images]) → gallery,
  animation or grid, codes file; dashes in the operation name become underscores
  (``random-walk`` → ``/edit_random_walk``)
* ``/check_upload`` (image[, model]) → notes on an upload (checked as it arrives)
* ``/select_model`` (model) → only with several models (``IDINVERT_MODELS``)

``[, model]``: the model selector's value, present only when several models are configured.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
import torch

from idinvert.core.boundaries import load_boundary, model_boundaries
from idinvert.core.codes import save_codes
from idinvert.core.edit import EditOperation, Layout
from idinvert.core.errors import IdinvertError
from idinvert.core.images import image_grid, resize_to_model, save_gif, save_png
from idinvert.core.inversion import StepInfo
from idinvert.core.modeldir import ModelBundle
from idinvert.demo import service
from idinvert.demo.compute import Compute, ComputeThread, InlineCompute
from idinvert.demo.controls import controls_for, update_for, values_from_controls
from idinvert.demo.gpu import gpu, zero_gpu
from idinvert.demo.queue_polling import set_queue_polling

log = logging.getLogger(__name__)


#: Seconds between two streamed progress updates of an inversion. Each update (status line and
#: loss plot) costs the server ≈ 30 ms of CPU taken from the inversion's cores: at 0.25 s it
#: slowed a 100-step inversion on 2 cores by ≈ 10 %.
STREAM_INTERVAL_S = 0.5

#: Shown size of results (CSS pixels): small models' images are upscaled for display only;
#: the files behind them (downloads, API) stay at the model resolution.
DISPLAY_SIZE = 256

CSS = f"""
.idinvert-metrics {{font-variant-numeric: tabular-nums}}
.idinvert-result img {{
  width: {DISPLAY_SIZE}px !important; height: {DISPLAY_SIZE}px !important;
  max-width: 100%; object-fit: contain; image-rendering: auto;
}}
.idinvert-wide img {{max-height: 320px !important; object-fit: contain !important}}
.idinvert-gallery .grid-container {{
  grid-template-columns: repeat(auto-fill, minmax(120px, 160px)) !important;
}}
.idinvert-note p {{margin: 0}}
#status {{min-height: 1.6em}}
"""

#: Quick-edit sliders when several models are configured (labels follow the chosen model).
MULTI_MODEL_SLIDERS = 8


class UserError(gr.Error):
    """An expected error shown to the user; logged as one line, no traceback."""


def photo_input(**kwargs: Any) -> gr.Image:
    """``gr.Image`` (upload/webcam/clipboard, as a file path) that hands undecodable uploads to
    our validation instead of failing in Gradio's preprocessing with a generic message.

    (An instance-level override: subclassing Gradio components makes Gradio write ``.pyi``
    stubs next to our source at import time.)
    """
    component = gr.Image(type="filepath", **kwargs)
    original = component.preprocess

    def tolerant_preprocess(payload: Any) -> Any:
        try:
            return original(payload)
        except Exception:  # noqa: BLE001 - service.load_upload reports what is wrong
            return getattr(payload, "path", None)

    component.preprocess = tolerant_preprocess  # type: ignore[method-assign]
    return component


def user_error(message: str) -> gr.Error:
    """A ``gr.Error`` for an expected problem: shown for 20 s (or until closed), no server
    traceback."""
    return gr.Error(service.web_message(message), duration=20, print_exception=False)


def _convert(exc: Exception, where: str) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, (service.DemoError, IdinvertError, ValueError)):
        log.info("%s: user error: %s", where, str(exc).replace("\n", " "))
        return user_error(str(exc))
    log.exception("%s failed unexpectedly", where)
    return gr.Error(
        f"Something went wrong on the server ({type(exc).__name__}); please try again.",
        duration=None,
        print_exception=False,
    )


def guarded(fn: Any) -> Any:
    """Expected errors → a visible message (one log line); unexpected ones → a short message
    and the traceback in the log. Works for plain functions and generators."""
    where = getattr(fn, "__name__", "action")
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - keep serving other users
                raise _convert(exc, where) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - keep serving other users
            raise _convert(exc, where) from None

    return wrapper


_CHOICE = re.compile(
    r"Value:? (?P<value>.+?) (?:\(type: <class '\w+'>\) )?is not in the list of choices: "
    r"(?P<choices>.*)"
)
_RANGE = re.compile(
    r"Value (?P<value>\S+) is (?P<how>less|greater) than (?P<which>\w+) value "
    r"(?P<bound>\S+?)\.?$"
)


def _input_message(label: str, message: str) -> str:
    """Gradio's own input checks (a value outside a slider, not among the choices) in words."""
    if m := _CHOICE.match(message):
        return f"{label}: {m['value']} is not one of the choices {m['choices']}"
    if m := _RANGE.match(message):
        return f"{label}: {m['value']} is {m['how']} than the {m['which']} of {m['bound']}"
    return f"{label}: {message}"


def _quiet_preprocess(component: Any) -> None:
    """Make a component's input checks user errors: a message naming the control, one log
    line, no traceback (instance-level, like :func:`photo_input`)."""
    original = getattr(component, "preprocess", None)
    if original is None or isinstance(component, gr.State):
        return
    label = getattr(component, "label", None) or type(component).__name__

    def preprocess(payload: Any) -> Any:
        try:
            return original(payload)
        except (gr.Error, ValueError, TypeError) as exc:
            message = _input_message(str(label), getattr(exc, "message", None) or str(exc))
            log.info("input check: user error: %s", message)
            raise user_error(message) from None

    component.preprocess = preprocess


def _note(lines: list[str], warn: bool = False) -> str:
    return "\n".join(("⚠️ " if warn else "ℹ️ ") + line for line in lines)


class DemoApp:
    """Holds the models, the result files and the limits; builds the Blocks.

    Args:
        catalog: the selectable models (loaded lazily, once; the default at build time).
        operations: edit operations by name (one tab each).
        limits: server-side caps.
        plugin_problems: lines for the broken-plugin banner.
        results_root: where result files go (default: inside Gradio's cache folder, so they
            are served without a copy).
    """

    def __init__(
        self,
        catalog: service.ModelCatalog,
        operations: dict[str, EditOperation],
        limits: service.DemoLimits | None = None,
        plugin_problems: list[str] | None = None,
        results_root: Path | None = None,
        compute: Compute | None = None,
    ) -> None:
        self.catalog = catalog
        self.operations = operations
        self.limits = limits or service.DemoLimits()
        self.compute = compute if compute is not None else make_compute(self.limits)
        self.plugin_problems = plugin_problems or []
        if results_root is None:
            from gradio.utils import get_upload_folder

            results_root = Path(get_upload_folder()) / "idinvert-results" / os.urandom(6).hex()
        ttl, grace = self.limits.session_ttl_s, self.limits.result_grace_s
        self.results = service.ResultFiles(results_root, idle_s=ttl + grace, grace_s=grace)
        self.results.start_sweeper(every_s=min(60.0, max(1.0, (ttl + grace) / 4)))
        self.multi = len(catalog.labels) > 1

    # ------------------------------------------------------------------ helpers

    def entry(self, label: str | None) -> service.ModelEntry:
        """The model entry ``label``; a model not loaded yet is loaded on the compute thread."""
        if self.catalog.is_loaded(label or self.catalog.default):
            return self.catalog.get(label)
        return self.compute.call(self.catalog.get, label)

    def _session_entry(self, session: dict | None) -> service.ModelEntry:
        return self.entry((session or {}).get("model"))

    def _new_session(self, previous: dict | None, **values: Any) -> dict:
        """A session value keeping the previous one's file folder."""
        files = (previous or {}).get("files") or os.urandom(8).hex()
        return {"files": files, **values}

    def _sweep_on_unload(self) -> None:
        """A tab closed: remove result folders no session needs any more."""
        self.results.sweep()

    def _png(self, folder: Path, name: str, image: np.ndarray | None) -> str | None:
        if image is None:
            return None
        path = folder / f"{name}.png"
        save_png(image, path)
        return str(path)

    # ------------------------------------------------------------------ actions

    @gpu
    def _invert_stream(
        self,
        entry: service.ModelEntry,
        image: np.ndarray,
        steps: int,
        expert: service.ExpertSettings,
    ) -> Iterator[tuple[str, Any]]:
        """Run the inversion on the compute thread; yield ``("step", StepInfo)`` about every
        :data:`STREAM_INTERVAL_S` while it runs, then ``("done", InversionOutput)``. Closing
        this generator early (the request went away) stops the inversion at its next step, so
        an abandoned run does not hold the compute thread."""
        updates: queue.Queue = queue.Queue()
        abandoned = threading.Event()  # the request went away: free the compute thread

        def on_step(info: StepInfo) -> None:
            if abandoned.is_set():
                raise service.InversionAbandoned
            updates.put(info)
            self.compute.run_waiting_short()  # sliders answer between two steps

        bundle = entry.bundle
        precision = self.limits.precision_for(bundle.device)

        def run_batch(items: list[tuple[np.ndarray, Any]]) -> list[service.InversionOutput]:
            images, callbacks = zip(*items, strict=True)
            return service.invert_images(
                bundle, list(images), steps, list(callbacks), entry.lpips, expert, precision
            )

        # concurrent visitors' inversions with equal settings run as one batch
        key = ("invert", entry.label, steps, expert, precision)
        future = self.compute.submit_batched(
            key, (image, on_step), run_batch, self.limits.max_batch
        )
        last = 0.0
        latest = None
        try:
            while not futures.wait([future], timeout=0.05).done:
                while not updates.empty():
                    latest = updates.get_nowait()
                if latest is not None and time.monotonic() - last > STREAM_INTERVAL_S:
                    last = time.monotonic()
                    yield "step", latest
                    latest = None
        finally:  # closed early (the visitor left, the job was cancelled): drop out of the
            # queue, or stop at the next step
            if not future.done() and not future.cancel():
                abandoned.set()
        yield "done", future.result()

    def invert(
        self,
        image_path: str | None,
        steps: float,
        align: bool = False,
        learning_rate: float | None = None,
        perceptual_weight: float | None = None,
        domain_weight: float | None = None,
        *rest: Any,
    ) -> Iterator[tuple]:
        """Upload → (input, encoder, final, metrics, loss curve, codes file, session, edited,
        final pasted back into the photo); streams the loss curve and a status line."""
        model, session = self._model_and_session(rest)
        with self.results.in_use(session):
            yield from self._invert(
                image_path,
                steps,
                align,
                learning_rate,
                perceptual_weight,
                domain_weight,
                model,
                session,
            )

    def _model_and_session(self, rest: tuple) -> tuple[str | None, dict | None]:
        """The trailing inputs: ``[model,] session``."""
        if self.multi:
            return (rest[0] if rest else None), (rest[1] if len(rest) > 1 else None)
        return None, (rest[0] if rest else None)

    def _invert(
        self,
        image_path: str | None,
        steps: float,
        align: bool,
        learning_rate: float | None,
        perceptual_weight: float | None,
        domain_weight: float | None,
        model: str | None,
        session: dict | None,
    ) -> Iterator[tuple]:
        entry = self.entry(model)
        bundle = entry.bundle
        steps_int = service.check_steps(steps, self.limits)
        expert = service.ExpertSettings.checked(
            learning_rate=learning_rate,
            perceptual_weight=perceptual_weight,
            domain_weight=domain_weight,
        )
        name = Path(image_path).stem if image_path else "image"
        photo = service.load_upload(image_path, self.limits, "image")
        notes = service.upload_notes(image_path, self.limits, bundle.resolution)
        alignment = None
        if align:
            image, alignment = self.compute.call(service.align_upload, bundle, photo, name)
        else:
            image = resize_to_model(photo, bundle.resolution)
        skip = [gr.skip()] * 9
        start = "Encoding" + (f", then optimizing {steps_int} steps" if steps_int else "") + "…"
        yield (*skip[:3], start, _curve(None, steps_int), *skip[5:])
        history: dict[str, list[float]] = {}
        weights = loss_weights(expert)
        out = None
        for kind, value in self._invert_stream(entry, image, steps_int, expert):
            if kind == "step":
                _extend_history(history, value)
                status = f"Optimizing: step {value.step} of {value.total}"
                frame = _loss_frame_lists(history, weights)
                yield (*skip[:3], status, _curve(frame, steps_int), *skip[5:])
            else:
                out = value
        assert out is not None
        folder = self.results.new_result({"files": (session or {}).get("files")})
        if not out.perceptual_used:
            weights["perceptual"] = 0.0
        metrics = _metrics_line(out, steps_int, weights)
        if alignment is not None:
            metrics += f" · aligned the largest of {alignment['faces']} face(s)"
        if steps_int and not out.perceptual_used:
            reason = bundle.perceptual_missing or "the model has no perceptual network"
            metrics += f"  \n⚠️ VGG perceptual term off: {service.web_message(reason)}"
        if notes:
            metrics += "  \n" + _note(notes).replace("\n", "  \n")
        new_session = self._new_session(
            session,
            codes=out.codes,
            init_codes=out.init_codes,
            image=image,
            name=name,
            alignment=alignment,
            model=entry.label,
        )
        new_session["files"] = folder.parent.name
        final = self._png(folder, f"{name}_inverted", out.final_image)
        yield (
            self._png(folder, f"{name}_input", image),
            self._png(folder, f"{name}_encoder", out.encoder_image),
            final,
            metrics,
            _loss_frame(out.history, weights),  # the axis was fixed by the first update
            self._codes_file(folder, out.codes, f"{name}_codes.npy"),
            new_session,
            final,
            self._png(
                folder, f"{name}_pasted", service.paste_into_original(new_session, out.final_image)
            ),
        )

    def _codes_file(self, folder: Path, codes: np.ndarray, name: str) -> str:
        path = folder / name
        save_codes(codes, path)
        return str(path)

    def sample(self, seed: float, *rest: Any) -> tuple:
        model, session = self._model_and_session(rest)
        with self.results.in_use(session):
            return self._sample(seed, model, session)

    def _sample(self, seed: float, model: str | None, session: dict | None) -> tuple:
        entry = self.entry(model)
        try:
            seed_int = int(seed)
        except (TypeError, ValueError, OverflowError):
            raise service.DemoError(f"the seed must be a whole number, got {seed!r}") from None
        if not 0 <= seed_int < 2**32:
            raise service.DemoError(f"the seed must be between 0 and {2**32 - 1}, got {seed}")
        codes, image = self.compute.call(service.sample_code, entry.bundle, seed_int, short=True)
        new_session = self._new_session(
            session,
            codes=codes,
            init_codes=None,
            image=image,
            name=f"sample{seed_int}",
            model=entry.label,
        )
        folder = self.results.new_result(new_session)
        psi = entry.bundle.config.generator.truncation_psi
        metrics = f"Random sample of **{entry.label}**, seed {seed_int} (truncation ψ = {psi})"
        path = self._png(folder, f"sample{seed_int}", image)
        codes_file = self._codes_file(folder, codes, f"sample{seed_int}_codes.npy")
        return path, path, path, metrics, None, codes_file, new_session, path, None

    def quick_edit(self, session: dict | None, *strengths: float) -> tuple:
        """Strengths → (edited image, pasted-back image, session): the session is returned
        unchanged so that its time-to-live starts again."""
        with self.results.in_use(session):
            return (*self._quick_edit(session, *strengths), session)

    def _quick_edit(self, session: dict | None, *strengths: float) -> tuple[str, str | None]:
        codes = service.require_codes(session)
        entry = self._session_entry(session)
        names = list(entry.boundaries)
        values = {}
        for i, value in enumerate(strengths):
            try:
                number = float(value or 0.0)
            except (TypeError, ValueError):
                raise service.DemoError(
                    f"slider {i + 1}: expected a number, got {value!r}"
                ) from None
            if not np.isfinite(number) or abs(number) > 3:
                raise service.DemoError(
                    f"quick-edit strengths must be between -3 and 3, got {value}"
                )
            if i < len(names):
                values[names[i]] = number
        if not self.multi and len(strengths) != len(names):
            raise service.DemoError(f"expected {len(names)} strengths, got {len(strengths)}")
        image = self.compute.call(
            service.quick_edit, entry.bundle, codes, entry.boundaries, values, short=True
        )
        folder = self.results.new_result(session)
        pasted = service.paste_into_original(session, image)
        return self._png(folder, "edited", image), self._png(folder, "edited_pasted", pasted)

    def quick_edit_ui(self, session: dict | None, *strengths: float) -> tuple:
        """The sliders' callback: never fails (a message instead), so the browser never sees
        an HTTP error."""
        try:
            edited, pasted, session = self.quick_edit(session, *strengths)
        except (service.DemoError, IdinvertError, ValueError) as exc:
            log.info("quick edit: user error: %s", exc)
            message = _note([service.web_message(str(exc))], warn=True)
            return gr.skip(), gr.skip(), message, gr.skip()
        except Exception:  # noqa: BLE001 - keep serving; the message says what to do
            log.exception("quick edit failed unexpectedly")
            message = _note(["Something went wrong; please try again."], warn=True)
            return gr.skip(), gr.skip(), message, gr.skip()
        return edited, pasted, QUICK_READY, session

    def check_upload(self, image_path: str | None, *rest: Any) -> str:
        """Notes on an upload as it arrives (a GIF's first frame, upscaling, ...) or what is
        wrong with it; never raises."""
        model = rest[0] if self.multi and rest else None
        try:
            notes = service.upload_notes(
                image_path, self.limits, self.entry(model).bundle.resolution
            )
        except (service.DemoError, IdinvertError, ValueError) as exc:
            log.info("upload check: user error: %s", exc)
            message = service.web_message(str(exc))
            gr.Warning(message)
            return _note([message], warn=True)
        return _note(notes)

    @gpu
    def _edit_work(
        self,
        bundle: ModelBundle,
        op: EditOperation,
        inputs: dict,
        params: dict,
        progress: gr.Progress,
    ) -> tuple:
        def report(done: int, total: int, desc: str) -> None:
            progress((done, total), desc=desc or op.title)

        return service.run_operation(bundle, op, inputs, params, report, self.limits)

    def edit(self, op: EditOperation, session: dict | None, *args: Any) -> tuple:
        """Run ``op`` on the session's code: ``args`` are (the tab's uploads, the controls'
        values, progress) → gallery, animation, codes, session (unchanged: its time-to-live
        starts again)."""
        with self.results.in_use(session):
            return (*self._edit(op, session, *args), session)

    def _edit(
        self,
        op: EditOperation,
        session: dict | None,
        extra: list,
        values: list,
        progress: gr.Progress,
    ) -> tuple:
        service.require_codes(session)
        entry = self._session_entry(session)
        bundle = entry.bundle
        steps = min(self.limits.default_steps, self.limits.max_steps)
        params = values_from_controls(op, values)
        service.check_params(op, params, bundle, self.limits)

        def invert_photo(image: np.ndarray) -> np.ndarray:
            precision = self.limits.precision_for(bundle.device)
            out = service.invert_image(bundle, image, steps, None, None, None, precision)
            return out.codes

        def work() -> tuple:
            inputs = service.gather_inputs(
                bundle, op.inputs, session, extra, self.limits, invert_photo
            )
            return self._edit_work(bundle, op, inputs, params, progress)

        try:
            result, images = self.compute.call(work)
        except service.DemoError:
            raise
        except (IdinvertError, ValueError) as exc:
            raise service.DemoError(service.edit_message(op, exc)) from None
        folder = self.results.new_result(session)
        frames = [
            (self._png(folder, f"{op.name}_{i:03d}", img), caption)
            for i, (img, caption) in enumerate(service.result_frames(result, images))
        ]
        animation = None
        if result.layout is Layout.SEQUENCES:
            animation = str(folder / f"{op.name}.gif")
            save_gif(list(images[0]), animation)
        elif result.layout is Layout.GRID:
            grid = image_grid(images.reshape(-1, *images.shape[-3:]), images.shape[1])
            animation = str(folder / f"{op.name}_grid.png")
            save_png(grid, animation)
        codes_path = self._codes_file(folder, result.codes, f"{op.name}_codes.npy")
        return frames, animation, codes_path

    def select_model(self, label: str, session: dict | None) -> tuple:
        """Switch the page to model ``label`` (loaded on first use): its line, examples,
        quick-edit sliders and edit controls; the previous results are cleared."""
        entry = self.entry(label)
        self.results.release(session)
        full = gr.update(value=None, visible=_can_align(entry.bundle))
        cleared = [None, None, None, "", None, None, None, None, full]
        updates = [
            service.model_summary(entry.label, entry.bundle, bool(entry.examples)),
            *cleared,
            gr.update(samples=[[p] for p in entry.examples], visible=bool(entry.examples)),
            gr.update(
                value=service.alignment_default(entry.bundle),
                interactive=_can_align(entry.bundle),
            ),
            gr.update(value=QUICK_EMPTY),
        ]
        names = list(entry.boundaries)
        for i in range(self.n_sliders):
            if i < len(names):
                b = entry.boundaries[names[i]]
                updates.append(
                    gr.update(
                        label=names[i].replace("_", " "),
                        info=f"layers {b.layers or 'all'}",
                        visible=True,
                        value=0,
                    )
                )
            else:
                updates.append(gr.update(visible=False, value=0))
        for op in self.operations.values():
            updates.extend(update_for(p, entry.bundle, self.limits) for p in op.params)
        return tuple(updates)

    # ------------------------------------------------------------------ layout

    def build(self) -> gr.Blocks:
        entry = self.entry(None)
        bundle = entry.bundle
        limits = self.limits
        with gr.Blocks(title="idinvert — in-domain GAN inversion") as blocks:
            gr.Markdown(
                "# idinvert — In-Domain GAN Inversion\n"
                "Turn an image into the code of a GAN (inversion), then edit it by moving that "
                "code: the reconstruction stays inside the model's domain."
            )
            model_dd = None
            if self.multi:
                model_dd = gr.Dropdown(
                    self.catalog.labels,
                    value=entry.label,
                    label="Model",
                    info="Each model is loaded the first time it is chosen.",
                    elem_id="model-select",
                )
            info = gr.Markdown(
                service.model_summary(entry.label, bundle, bool(entry.examples)),
                elem_id="model-info",
            )
            if self.plugin_problems:
                gr.Markdown(
                    "⚠️ **Some plugins failed to load** (the others work):\n"
                    + "\n".join(f"- {service.web_message(p)}" for p in self.plugin_problems),
                    elem_id="plugin-errors",
                )
            session = gr.State(
                None,
                time_to_live=limits.session_ttl_s,
                delete_callback=self.results.release,
            )
            with gr.Row():
                with gr.Column(scale=1):
                    upload = photo_input(
                        sources=["upload", "webcam", "clipboard"],
                        label="Photo",
                        elem_id="upload",
                        height=DISPLAY_SIZE,
                    )
                    upload_note = gr.Markdown(elem_id="upload-note", elem_classes=["idinvert-note"])
                    examples = gr.Dataset(
                        components=[upload],
                        samples=[[p] for p in entry.examples],
                        label="Examples (click one)",
                        type="values",
                        visible=bool(entry.examples),
                        elem_id="examples",
                    )
                    steps = gr.Slider(
                        0,
                        limits.max_steps,
                        value=min(limits.default_steps, limits.max_steps),
                        step=1,
                        label="Optimization steps (0 = encoder only)",
                        info="More steps: closer to the photo, but slower "
                        f"(at most {limits.max_steps}).",
                    )
                    align = gr.Checkbox(
                        value=service.alignment_default(bundle),
                        label="Align face",
                        info=_align_info(bundle),
                        interactive=_can_align(bundle),
                        elem_id="align",
                    )
                    with gr.Accordion("Expert settings", open=False):
                        expert = [
                            gr.Number(
                                value=getattr(service.ExpertSettings(), name),
                                label=service.ExpertSettings.LABELS[name],
                                info=f"Official default "
                                f"{getattr(service.ExpertSettings(), name):g}; "
                                f"accepted {lo:g} to {hi:g}.",
                                minimum=lo,
                                maximum=hi,
                                elem_id=f"expert-{name.replace('_', '-')}",
                            )
                            for name, (lo, hi) in service.ExpertSettings.RANGES.items()
                        ]
                    invert_btn = gr.Button("Invert", variant="primary", elem_id="invert-btn")
                    with gr.Row():
                        seed = gr.Number(
                            value=0,
                            precision=0,
                            label="Seed",
                            min_width=80,
                            minimum=0,
                            maximum=2**32 - 1,
                        )
                        sample_btn = gr.Button("Random sample", elem_id="sample-btn")
                with gr.Column(scale=2):
                    status = gr.Markdown("", elem_id="status")
                    with gr.Row():
                        shown_input = gr.Image(
                            label="Input (as the model sees it)",
                            interactive=False,
                            elem_id="input",
                            elem_classes=["idinvert-result"],
                        )
                        shown_enc = gr.Image(
                            label="Encoder only",
                            interactive=False,
                            elem_id="encoder",
                            elem_classes=["idinvert-result"],
                        )
                        shown_final = gr.Image(
                            label="In-domain inversion",
                            interactive=False,
                            elem_id="final",
                            elem_classes=["idinvert-result"],
                        )
                    metrics = gr.Markdown(elem_classes=["idinvert-metrics"], elem_id="metrics")
                    curve = gr.LinePlot(
                        None,
                        x="step",
                        y="loss",
                        color="term",
                        title="Loss per optimization step",
                        x_title="step",
                        y_title="loss",
                        color_title="loss term",
                        height=260,
                        elem_id="loss-curve",
                    )
                    codes_file = gr.File(label="W+ code (.npy, for the command line or Python)")
            with gr.Row():
                edited = gr.Image(
                    label="Edited",
                    interactive=False,
                    elem_id="edited",
                    elem_classes=["idinvert-result"],
                )
                full = gr.Image(
                    label="Pasted back into your photo (when aligned)",
                    interactive=False,
                    visible=_can_align(bundle),
                    elem_id="full",
                    elem_classes=["idinvert-wide"],
                )
            outputs = [
                shown_input,
                shown_enc,
                shown_final,
                metrics,
                curve,
                codes_file,
                session,
                edited,
                full,
            ]
            tail = [model_dd, session] if model_dd is not None else [session]
            upload.change(
                guarded(self.check_upload),
                [upload, *tail[:-1]],
                [upload_note],
                api_name="check_upload",
                show_progress="hidden",
            )
            examples.click(lambda sample: sample[0], [examples], [upload], api_name=False)
            model_names = ["model", "session"] if model_dd is not None else ["session"]
            invert_fn = _with_parameters(
                guarded(self.invert),
                [
                    ("image", inspect.Parameter.empty),
                    ("steps", inspect.Parameter.empty),
                    ("align", False),
                    ("learning_rate", None),
                    ("perceptual_weight", None),
                    ("domain_weight", None),
                    *((n, None) for n in model_names),
                ],
            )
            sample_fn = _with_parameters(
                guarded(self.sample),
                [("seed", inspect.Parameter.empty), *((n, None) for n in model_names)],
            )
            invert_event = invert_btn.click(
                invert_fn,
                [upload, steps, align, *expert, *tail],
                outputs,
                api_name="invert",
                show_progress="minimal",
                show_progress_on=[status],
            )
            sample_event = sample_btn.click(
                sample_fn,
                [seed, *tail],
                outputs,
                api_name="sample",
                show_progress="minimal",
                show_progress_on=[status],
            )
            quick_note, sliders = self._build_quick_tab(entry, session, edited, full)
            for event in (invert_event, sample_event):
                event.success(lambda: ("", QUICK_READY), None, [status, quick_note], api_name=False)
            controls = []
            for op in self.operations.values():
                controls.extend(self._build_operation_tab(op, entry.bundle, session))
            if model_dd is not None:
                model_dd.change(
                    guarded(self.select_model),
                    [model_dd, session],
                    [info, *outputs, examples, align, quick_note, *sliders, *controls],
                    api_name="select_model",
                    show_progress="minimal",
                    show_progress_on=[info],
                )
            blocks.unload(self._sweep_on_unload)
        for component in blocks.blocks.values():
            _quiet_preprocess(component)
        blocks.demo_app = self  # type: ignore[attr-defined] - for tests and tools
        blocks.queue(default_concurrency_limit=limits.concurrency, max_size=64)
        set_queue_polling(blocks)
        return blocks

    def _build_quick_tab(
        self, entry: service.ModelEntry, session: gr.State, edited: gr.Image, full: gr.Image
    ) -> tuple[gr.Markdown, list[gr.Slider]]:
        names = list(entry.boundaries)
        self.n_sliders = max(MULTI_MODEL_SLIDERS, len(names)) if self.multi else len(names)
        with gr.Tab("Quick edit", elem_id="tab-quick", visible=bool(self.n_sliders)):
            gr.Markdown(
                "Move the code along the model's semantic boundaries (e.g. smile, age); only "
                "the image synthesis reruns, so the result follows the slider."
            )
            quick_note = gr.Markdown(QUICK_EMPTY, elem_id="quick-note")
            sliders = []
            for i in range(self.n_sliders):
                name = names[i] if i < len(names) else f"slot{i}"
                b = entry.boundaries.get(name)
                sliders.append(
                    gr.Slider(
                        -3,
                        3,
                        value=0,
                        step=0.1,
                        label=name.replace("_", " "),
                        elem_id=f"quick-{name}" if b is not None else f"quick-slot{i}",
                        info=f"layers {b.layers or 'all'}" if b is not None else "",
                        visible=b is not None,
                    )
                )
        if not sliders:
            return quick_note, sliders

        def quick(session_value: dict | None, *strengths: float) -> tuple:
            return self.quick_edit(session_value, *strengths)

        def quick_ui(session_value: dict | None, *strengths: float) -> tuple:
            return self.quick_edit_ui(session_value, *strengths)

        quick_names = ["session"] + (
            [_identifier(n) for n in names]
            if not self.multi
            else [f"strength_{i + 1}" for i in range(self.n_sliders)]
        )
        quick.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in quick_names]
        )
        for s in sliders:
            s.change(
                quick_ui,
                [session, *sliders],
                [edited, full, quick_note, session],
                api_name=False,
                show_progress="hidden",
                # synthesis only (~20 ms): skip the queue, drop stale moves; never raises
                queue=False,
                trigger_mode="always_last",
            )
        gr.Button("Apply", visible=False).click(
            guarded(quick),
            [session, *sliders],
            [edited, full, session],
            api_name="quick_edit",
            queue=False,
        )
        return quick_note, sliders

    def _build_operation_tab(
        self, op: EditOperation, bundle: ModelBundle, session: gr.State
    ) -> list[gr.components.Component]:
        words = service.operation_words(op)
        with gr.Tab(op.title, elem_id=f"tab-{op.name}"):
            gr.Markdown(
                service.web_message(op.description, words)
                + (f"  \n*Plugin: {op.plugin}*" if op.plugin else "")
            )
            source = service.INPUT_SOURCES[op.inputs]
            gr.Markdown(
                "Works on the code of the photo inverted above (or of a random sample): "
                "invert or sample first." + (f" {source.note}" if source.note else ""),
                elem_classes=["idinvert-note"],
            )
            extra = [
                gr.File(file_count="multiple", file_types=["image"], label=upload.label)
                if upload.multiple
                else photo_input(label=upload.label, height=DISPLAY_SIZE)
                for _, upload in source.uploads
            ]
            if any(upload.multiple for _, upload in source.uploads):
                gr.Markdown(
                    f"At most {self.limits.max_contexts} images.", elem_classes=["idinvert-note"]
                )
            controls = controls_for(op, bundle, self.limits)
            run_btn = gr.Button(f"Run {op.title}", variant="primary", elem_id=f"run-{op.name}")
            gallery = gr.Gallery(
                label="Result",
                columns=7,
                height="auto",
                object_fit="contain",
                elem_id=f"gallery-{op.name}",
                elem_classes=["idinvert-gallery"],
            )
            animation = gr.Image(
                label="Animation" if op.layout is Layout.SEQUENCES else "Result grid",
                interactive=False,
                visible=op.layout is not Layout.BATCH,
                elem_classes=["idinvert-wide"],
                height=320,
            )
            codes = gr.File(label="Edited codes (.npy)")
            n_extra = len(extra)

            def handler(
                session_value: dict | None, *values: Any, progress: gr.Progress = gr.Progress()
            ) -> tuple:
                return self.edit(
                    op, session_value, list(values[:n_extra]), list(values[n_extra:]), progress
                )

            handler.__name__ = f"edit {op.name}"
            uploads = [name for name, _ in source.uploads]
            _name_parameters(handler, ["session", *uploads, *(p.name for p in op.params)])
            run_btn.click(
                guarded(handler),
                [session, *extra, *controls],
                [gallery, animation, codes, session],
                api_name=service.endpoint_name(op),
                show_progress_on=[gallery],
            )
        return controls


QUICK_EMPTY = _note(
    [
        "Nothing to edit yet: invert a photo or draw a random sample first; the sliders then move "
        "its code."
    ]
)
QUICK_READY = _note(["Move a slider: the edited image updates below."])


def _can_align(bundle: ModelBundle) -> bool:
    from idinvert.core.alignment import is_available

    return bundle.config.image.alignment == "ffhq" and is_available()


def _align_info(bundle: ModelBundle) -> str:
    from idinvert.core.alignment import is_available

    if bundle.config.image.alignment != "ffhq":
        return "Not needed: this model's images are not aligned face crops."
    if not is_available():
        return "Face detection is not installed on this server; the whole image is used."
    return (
        "On: the largest face is found and cropped like the model's training faces; results "
        "are pasted back into your photo."
    )


def _with_parameters(fn: Any, params: list[tuple[str, Any]]) -> Any:
    """``fn`` with an explicit signature (names and defaults the API shows)."""
    fn.__signature__ = inspect.Signature(
        [
            inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d)
            for n, d in params
        ]
    )
    return fn


def _identifier(name: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in name)
    return cleaned if cleaned[:1].isalpha() else f"b_{cleaned}"


def _name_parameters(fn: Any, names: list[str]) -> None:
    """Give a ``*values`` callback a real signature so the API shows parameter names."""
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    params.append(
        inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=gr.Progress())
    )
    fn.__signature__ = inspect.Signature(params)


#: Loss terms plotted, in legend order.
LOSS_TERMS = ("total", "pixel", "perceptual", "domain")


def loss_weights(expert: service.ExpertSettings) -> dict[str, float]:
    """Each term's weight in the total (the curve plots weighted terms: one scale)."""
    return {
        "total": 1.0,
        "pixel": 1.0,
        "perceptual": expert.perceptual_weight,
        "domain": expert.domain_weight,
    }


def _term_label(term: str, weight: float) -> str:
    return term if weight == 1.0 else f"{term} × {weight:g}"


def _extend_history(history: dict[str, list[float]], info: StepInfo) -> None:
    """Append the first image's losses of a step (``info.step`` is 1-based)."""
    for term in LOSS_TERMS:
        if term in info.losses:
            values = history.setdefault(term, [])
            values.extend([float("nan")] * (info.step - 1 - len(values)))
            values.append(float(np.asarray(info.losses[term]).reshape(-1)[0]))


def _loss_frame_lists(history: dict[str, list[float]], weights: dict[str, float]) -> pd.DataFrame:
    arrays = {k: np.asarray(v, dtype=np.float64)[:, None] for k, v in history.items()}
    return _loss_frame(arrays, weights)


def _loss_frame(
    history: dict[str, np.ndarray], weights: dict[str, float] | None = None
) -> pd.DataFrame:
    """Per-step weighted losses of the first image as a long table (step: int, loss: float,
    term: str, e.g. ``"domain × 2"``); terms switched off (weight or values zero) are left out.
    Numeric dtypes even when empty, so the plot's step axis is numeric."""
    weights = weights or {}
    steps: list[int] = []
    losses: list[float] = []
    terms: list[str] = []
    for term in LOSS_TERMS:
        weight = weights.get(term, 1.0)
        values = np.asarray(history.get(term, []), dtype=np.float64)
        if values.size == 0 or weight == 0:
            continue
        column = (values.reshape(len(values), -1)[:, 0]) * weight
        if not np.any(np.nan_to_num(column)):
            continue
        label = _term_label(term, weight)
        for step, value in enumerate(column):
            if np.isfinite(value):
                steps.append(step)
                losses.append(float(value))
                terms.append(label)
    return pd.DataFrame(
        {
            "step": pd.Series(steps, dtype="int64"),
            "loss": pd.Series(losses, dtype="float64"),
            "term": pd.Series(terms, dtype="object"),
        }
    )


def _curve(frame: pd.DataFrame | None, steps: int) -> Any:
    """A streamed update of the loss plot: the table, with the step axis fixed to the whole
    run (integer ticks; the curve grows from left to right). The final output is the plain
    table, so API clients get the same value as before."""
    return gr.update(value=frame, x_lim=[0, max(steps, 1)])


def _metrics_line(
    out: service.InversionOutput, steps: int, weights: dict[str, float] | None = None
) -> str:
    line = (
        f"**Encoder** MSE {out.mse_encoder:.4f}"
        + (f", LPIPS {out.lpips_encoder:.3f}" if out.lpips_encoder is not None else "")
        + f" · **In-domain inversion** ({steps} steps"
        + (f", {out.precision}" if out.precision != "fp32" else "")
        + f", {out.seconds:.1f} s)"
        + f" MSE {out.mse:.4f}"
        + (f", LPIPS {out.lpips:.3f}" if out.lpips is not None else " (LPIPS: not available)")
    )
    weights = weights or {}
    if steps and out.history:
        finals = []
        for term in LOSS_TERMS:
            values = np.asarray(out.history.get(term, []), dtype=np.float64)
            weight = weights.get(term, 1.0)
            if values.size and weight and np.any(values):
                value = float(values.reshape(len(values), -1)[-1, 0]) * weight
                finals.append(f"{_term_label(term, weight)} {value:.4g}")
        if finals:
            line += "  \nFinal losses: " + ", ".join(finals)
    return line


def _prepare_entry(lpips_loader: Any, examples: list[str] | None) -> Any:
    def prepare(entry: service.ModelEntry, bundle: ModelBundle) -> None:
        entry.boundaries = {
            name: load_boundary(p) for name, p in model_boundaries(bundle.path).items()
        }
        if examples is None:
            from idinvert.demo.examples import example_images

            found = example_images(bundle)
        else:
            found = list(examples)
        entry.examples = _servable(found, entry.label)
        entry.lpips = lpips_loader(bundle)

    return prepare


def _servable(paths: list[str], label: str) -> list[str]:
    """Copies of example files inside Gradio's cache folder (served as they are)."""
    import shutil

    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder()) / "idinvert-examples" / _identifier(label)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in paths:
        target = folder / Path(path).name
        if not target.is_file() or target.stat().st_size != Path(path).stat().st_size:
            shutil.copyfile(path, target)
        out.append(str(target))
    return out


def _load_lpips(bundle: ModelBundle) -> Any:
    try:
        from idinvert.hub.lpips_weights import load_lpips

        return load_lpips(bundle.device)
    except ImportError:
        return None


def model_entries(model_ref: str | None = None) -> list[tuple[str, str | None]]:
    """The models to offer: ``IDINVERT_MODELS`` (``label=ref,...``) when set — ``model_ref``,
    when given and not among them, comes first — else the one ``model_ref``
    (or ``IDINVERT_MODEL``, or the bundled model)."""
    spec = os.environ.get("IDINVERT_MODELS", "").strip()
    if spec:
        entries = service.parse_models(spec)
        if model_ref:
            known = {ref: label for label, ref in entries}
            if model_ref in known:
                label = known[model_ref]
                entries.sort(key=lambda e: e[0] != label)
            elif model_ref not in {label for label, _ in entries}:
                entries.insert(0, (Path(str(model_ref).rstrip("/")).name or model_ref, model_ref))
            else:
                entries.sort(key=lambda e: e[0] != model_ref)
        return entries
    ref = model_ref or os.environ.get("IDINVERT_MODEL") or None
    return [(None, ref)]  # type: ignore[list-item] - labelled after loading


def build_demo(
    model_ref: str | None = None,
    device: str = "auto",
    limits: service.DemoLimits | None = None,
    examples: list[str] | None = None,
) -> gr.Blocks:
    """Load the default model and the plugins once and build the app (not launched).

    With ``IDINVERT_MODELS`` set, the page gets a model selector; the other models are loaded
    the first time they are chosen."""
    from idinvert.core.plugins import edit_operations, plugin_errors
    from idinvert.hub.api import load_model

    limits = limits or service.DemoLimits()
    compute = make_compute(limits)
    entries = model_entries(model_ref)
    if entries[0][0] is None:  # one model: its label is its name
        bundle = compute.call(load_model, entries[0][1], device)
        label = bundle.config.name or Path(str(bundle.path)).name
        catalog = service.ModelCatalog(
            [(label, entries[0][1])],
            lambda _ref: bundle,
            _prepare_entry(_load_lpips, examples),
        )
    else:
        catalog = service.ModelCatalog(
            entries,
            lambda ref: load_model(ref, device),
            _prepare_entry(_load_lpips, examples),
        )
    operations = edit_operations()
    problems = [str(e) for e in plugin_errors()]
    app = DemoApp(catalog, operations, limits, problems, compute=compute)
    blocks = app.build()
    if isinstance(compute, ComputeThread):
        compute.submit(_warm_up, app, catalog.default)
    return blocks


def make_compute(limits: service.DemoLimits) -> Compute:
    """The server's :class:`ComputeThread` (``limits.threads_per_computation()`` threads), or
    :class:`InlineCompute` without one (``compute_thread=False``, ZeroGPU Spaces; each request
    then computes with that many threads)."""
    if limits.compute_thread and not zero_gpu():
        return ComputeThread(limits.threads_per_computation())
    torch.set_num_threads(limits.threads_per_computation())
    return InlineCompute()


def _warm_up(app: DemoApp, label: str) -> None:
    """First-request costs paid at start, on the compute thread: the bf16 copies of the
    networks, oneDNN's kernel choices, the allocator's pools (a 2-step inversion of a grey
    image). A failure is logged; the first real request then reports it."""
    try:
        entry = app.catalog.get(label)
        grey = np.full((entry.bundle.resolution,) * 2 + (3,), 128, dtype=np.uint8)
        precision = app.limits.precision_for(entry.bundle.device)
        service.invert_image(entry.bundle, grey, 2, None, None, None, precision)
    except Exception:  # noqa: BLE001 - start-up must not fail on a warm-up
        log.exception("warm-up inversion failed")


def launch_kwargs(limits: service.DemoLimits | None = None) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch``: the upload cap, the number of sessions kept,
    the style sheet."""
    limits = limits or service.DemoLimits()
    return {
        "max_file_size": f"{limits.max_upload_mb}mb",
        "css": CSS,
        "show_error": True,
        "state_session_capacity": limits.max_sessions,
    }
