"""The Gradio app: invert a photo, look at the reconstruction, edit it with every registered
edit operation. UI only — the work is done by :mod:`idinvert.demo.service` (core + plugins).

API (``gradio_client``; every event has an ``api_name``):

* ``/invert`` (image, steps) → input, encoder and final images, metrics, loss curve, codes file
* ``/sample`` (seed) → a random image of the model, codes file
* ``/quick_edit`` (one strength per boundary) → re-synthesized image (no re-inversion)
* ``/edit_<operation>`` (operation parameters [+ second image / context images]) → gallery,
  animation (sequences), codes file; dashes in the operation name become underscores
  (``random-walk`` → ``/edit_random_walk``)
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from idinvert.core.boundaries import load_boundary, model_boundaries
from idinvert.core.codes import save_codes
from idinvert.core.edit import EditOperation, Layout
from idinvert.core.errors import IdinvertError
from idinvert.core.images import image_grid, resize_to_model, save_gif, save_png
from idinvert.core.inversion import StepInfo
from idinvert.core.modeldir import ModelBundle
from idinvert.demo import service
from idinvert.demo.controls import controls_for, values_from_controls
from idinvert.demo.gpu import gpu

log = logging.getLogger(__name__)

CSS = ".idinvert-metrics {font-variant-numeric: tabular-nums}"


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
        except Exception:  # noqa: BLE001 - service.prepare_image reports what is wrong
            return getattr(payload, "path", None)

    component.preprocess = tolerant_preprocess  # type: ignore[method-assign]
    return component


def _user_error(exc: Exception) -> gr.Error:
    return gr.Error(str(exc), duration=None)


def guarded(fn: Any) -> Any:
    """Turn expected errors into visible ``gr.Error`` messages; log unexpected ones."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (service.DemoError, IdinvertError, ValueError) as exc:
            raise _user_error(exc) from None
        except Exception as exc:  # noqa: BLE001 - keep serving other users
            log.exception("demo action failed")
            raise gr.Error(f"internal error ({type(exc).__name__}): {exc}") from None

    return wrapper


class DemoApp:
    """Holds the model and output folder; builds the Blocks.

    Args:
        bundle: the loaded model (loaded once, shared by all sessions).
        limits: server-side caps.
        examples: example image paths for the gallery.
        lpips_metric: LPIPS callable or ``None`` (no real backbone available).
        plugin_problems: lines for the broken-plugin banner.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        operations: dict[str, EditOperation],
        limits: service.DemoLimits | None = None,
        examples: list[str] | None = None,
        lpips_metric: Any = None,
        plugin_problems: list[str] | None = None,
    ) -> None:
        self.bundle = bundle
        self.operations = operations
        self.limits = limits or service.DemoLimits()
        self.examples = examples or []
        self.lpips_metric = lpips_metric
        self.plugin_problems = plugin_problems or []
        self.boundaries = {
            name: load_boundary(p) for name, p in model_boundaries(bundle.path).items()
        }
        self.workdir = Path(tempfile.mkdtemp(prefix="idinvert-demo-"))

    # ------------------------------------------------------------------ files

    def _new_dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.workdir))

    def _codes_file(self, codes: np.ndarray, name: str = "codes.npy") -> str:
        path = self._new_dir() / name
        save_codes(codes, path)
        return str(path)

    # ------------------------------------------------------------------ actions

    @gpu
    def _invert_work(
        self, image: np.ndarray, steps: int, progress: gr.Progress
    ) -> service.InversionOutput:
        def on_step(info: StepInfo) -> None:
            progress((info.step, info.total), desc="optimizing", unit="steps")

        return service.invert_image(self.bundle, image, steps, on_step, self.lpips_metric)

    def invert(
        self,
        image_path: str | None,
        steps: float,
        align: bool = False,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple:
        """Upload → (input, encoder, final, metrics, loss curve, codes file, session, edited,
        final pasted back into the photo)."""
        steps_int = service.check_steps(steps, self.limits)
        name = Path(image_path).stem if image_path else "image"
        photo = service.load_upload(image_path, self.limits)
        alignment = None
        if align:
            image, alignment = service.align_upload(self.bundle, photo, name)
        else:
            image = resize_to_model(photo, self.bundle.resolution)
        out = self._invert_work(image, steps_int, progress)
        metrics = (
            f"**Encoder** MSE {out.mse_encoder:.4f}"
            + (f", LPIPS {out.lpips_encoder:.3f}" if out.lpips_encoder is not None else "")
            + f" · **In-domain inversion** ({steps_int} steps, {out.seconds:.1f} s)"
            + f" MSE {out.mse:.4f}"
            + (
                f", LPIPS {out.lpips:.3f}"
                if out.lpips is not None
                else " (LPIPS: no VGG backbone available)"
            )
        )
        curve = _loss_frame(out.history)
        session = {
            "codes": out.codes,
            "init_codes": out.init_codes,
            "image": image,
            "name": name,
            "alignment": alignment,
        }
        if alignment is not None:
            metrics += f" · aligned the largest of {alignment['faces']} face(s)"
        if steps_int and not out.perceptual_used:
            reason = self.bundle.perceptual_missing or "the model has no perceptual network"
            metrics += f"  \n⚠️ VGG perceptual term off: {reason}"
        return (
            image,
            out.encoder_image,
            out.final_image,
            metrics,
            curve,
            self._codes_file(out.codes, f"{name}_codes.npy"),
            session,
            out.final_image,
            service.paste_into_original(session, out.final_image),
        )

    def sample(self, seed: float) -> tuple:
        codes, image = service.sample_code(self.bundle, int(seed))
        session = {"codes": codes, "init_codes": None, "image": image, "name": f"sample{int(seed)}"}
        psi = self.bundle.config.generator.truncation_psi
        metrics = f"Random sample, seed {int(seed)} (truncation ψ = {psi})"
        empty = _loss_frame({})
        codes_file = self._codes_file(codes, f"sample{int(seed)}_codes.npy")
        return image, image, image, metrics, empty, codes_file, session, image, None

    def quick_edit(
        self, session: dict | None, *strengths: float
    ) -> tuple[np.ndarray, np.ndarray | None]:
        codes = service.require_codes(session)
        values = dict(zip(self.boundaries, strengths, strict=True))
        image = service.quick_edit(self.bundle, codes, self.boundaries, values)
        return image, service.paste_into_original(session, image)

    @gpu
    def _edit_work(
        self, op: EditOperation, inputs: dict, params: dict, progress: gr.Progress
    ) -> tuple:
        def report(done: int, total: int, desc: str) -> None:
            progress((done, total), desc=desc or op.title)

        return service.run_operation(self.bundle, op, inputs, params, report)

    def edit(
        self,
        op: EditOperation,
        session: dict | None,
        extra: list,
        values: list,
        progress: gr.Progress,
    ) -> tuple:
        """Run ``op`` on the session's code (+ the tab's uploads) → gallery, animation, codes."""
        steps = self.limits.default_steps

        def invert_photo(image: np.ndarray) -> np.ndarray:
            return self._invert_work(image, steps, progress).codes

        inputs = service.gather_inputs(
            self.bundle, op.inputs, session, extra, self.limits, invert_photo
        )
        params = values_from_controls(op, values)
        result, images = self._edit_work(op, inputs, params, progress)
        frames = service.result_frames(result, images)
        folder = self._new_dir()
        animation = None
        if result.layout is Layout.SEQUENCES:
            animation = str(folder / f"{op.name}.gif")
            save_gif(list(images[0]), animation)
        elif result.layout is Layout.GRID:
            grid = image_grid(images.reshape(-1, *images.shape[-3:]), images.shape[1])
            animation = str(folder / f"{op.name}_grid.png")
            save_png(grid, animation)
        codes_path = folder / f"{op.name}_codes.npy"
        save_codes(result.codes, codes_path)
        return frames, animation, str(codes_path)

    # ------------------------------------------------------------------ layout

    def build(self) -> gr.Blocks:
        bundle = self.bundle
        with gr.Blocks(title="idinvert — in-domain GAN inversion") as blocks:
            gr.Markdown(
                "# idinvert — In-Domain GAN Inversion\n"
                f"Model **{bundle.config.name}** ({bundle.resolution}×{bundle.resolution}, "
                f"W+ {bundle.num_layers}×{bundle.w_dim}). Upload a photo, invert it, then edit it."
            )
            if self.plugin_problems:
                gr.Markdown(
                    "⚠️ **Some plugins failed to load** (the others work):\n"
                    + "\n".join(f"- {p}" for p in self.plugin_problems),
                    elem_id="plugin-errors",
                )
            session = gr.State(None)
            with gr.Row():
                with gr.Column(scale=1):
                    upload = photo_input(
                        sources=["upload", "webcam", "clipboard"],
                        label="Photo",
                        elem_id="upload",
                    )
                    steps = gr.Slider(
                        0,
                        self.limits.max_steps,
                        value=self.limits.default_steps,
                        step=1,
                        label="Optimization steps (0 = encoder only)",
                    )
                    align = gr.Checkbox(
                        value=service.alignment_default(self.bundle),
                        label="Align face (FFHQ-style)",
                        info="Detect the largest face, crop it like the training faces, and paste "
                        "results back into your photo. On by default for face models.",
                        elem_id="align",
                    )
                    invert_btn = gr.Button("Invert", variant="primary", elem_id="invert-btn")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, label="Seed", min_width=80)
                        sample_btn = gr.Button("Random sample", elem_id="sample-btn")
                    if self.examples:
                        gr.Examples(
                            self.examples, inputs=[upload], label="Examples", cache_examples=False
                        )
                with gr.Column(scale=2):
                    with gr.Row():
                        shown_input = gr.Image(
                            label="Input (model resolution)",
                            format="png",
                            interactive=False,
                            height=240,
                        )
                        shown_enc = gr.Image(
                            label="Encoder start G(E(x))",
                            format="png",
                            interactive=False,
                            height=240,
                        )
                        shown_final = gr.Image(
                            label="In-domain inversion",
                            format="png",
                            interactive=False,
                            height=240,
                            elem_id="final",
                        )
                    metrics = gr.Markdown(elem_classes=["idinvert-metrics"], elem_id="metrics")
                    curve = gr.LinePlot(
                        _loss_frame({}),
                        x="step",
                        y="loss",
                        color="term",
                        title="Loss per step",
                        height=220,
                    )
                    codes_file = gr.File(label="W+ codes (.npy)")
            with gr.Row():
                edited = gr.Image(
                    label="Edited", format="png", interactive=False, elem_id="edited", height=256
                )
                full = gr.Image(
                    label="Pasted back into your photo (when aligned)",
                    format="png",
                    interactive=False,
                    height=256,
                    elem_id="full",
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
            invert_btn.click(
                guarded(self.invert), [upload, steps, align], outputs, api_name="invert"
            )
            sample_btn.click(guarded(self.sample), [seed], outputs, api_name="sample")
            with gr.Tabs():
                if self.boundaries:
                    with gr.Tab("Quick edit", elem_id="tab-quick"):
                        gr.Markdown(
                            "Move along the model's semantic boundaries; only synthesis reruns."
                        )
                        sliders = [
                            gr.Slider(
                                -3,
                                3,
                                value=0,
                                step=0.1,
                                label=name,
                                elem_id=f"quick-{name}",
                                info=f"layers {b.layers or 'all'}",
                            )
                            for name, b in self.boundaries.items()
                        ]

                        def quick(session_value: dict | None, *strengths: float) -> tuple:
                            return self.quick_edit(session_value, *strengths)

                        quick_names = ["session", *(_identifier(n) for n in self.boundaries)]
                        quick.__signature__ = inspect.Signature(
                            [
                                inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                for n in quick_names
                            ]
                        )
                        fn = guarded(quick)
                        for s in sliders:
                            s.change(
                                fn,
                                [session, *sliders],
                                [edited, full],
                                api_name=False,
                                show_progress="hidden",
                                # synthesis only (~20 ms): skip the queue, drop stale moves
                                queue=False,
                                trigger_mode="always_last",
                            )
                        gr.Button("Apply", visible=False).click(
                            fn,
                            [session, *sliders],
                            [edited, full],
                            api_name="quick_edit",
                            queue=False,
                        )
                for op in self.operations.values():
                    self._build_operation_tab(op, session)
        blocks.queue(default_concurrency_limit=self.limits.concurrency, max_size=64)
        return blocks

    def _build_operation_tab(self, op: EditOperation, session: gr.State) -> None:
        with gr.Tab(op.title, elem_id=f"tab-{op.name}"):
            gr.Markdown(op.description + (f"  \n*Plugin: {op.plugin}*" if op.plugin else ""))
            source = service.INPUT_SOURCES[op.inputs]
            if source.note:
                gr.Markdown(source.note)
            extra = [
                gr.File(file_count="multiple", file_types=["image"], label=upload.label)
                if upload.multiple
                else photo_input(label=upload.label)
                for _, upload in source.uploads
            ]
            controls = controls_for(op, self.bundle)
            run_btn = gr.Button(f"Run {op.title}", variant="primary", elem_id=f"run-{op.name}")
            gallery = gr.Gallery(label="Result", columns=7, height="auto", format="png")
            animation = gr.Image(label="Animation / grid", format="png", interactive=False)
            codes = gr.File(label="Edited codes (.npy)")
            n_extra = len(extra)

            def handler(
                session_value: dict | None, *values: Any, progress: gr.Progress = gr.Progress()
            ) -> tuple:
                return self.edit(
                    op, session_value, list(values[:n_extra]), list(values[n_extra:]), progress
                )

            uploads = [name for name, _ in source.uploads]
            _name_parameters(handler, ["session", *uploads, *(p.name for p in op.params)])
            run_btn.click(
                guarded(handler),
                [session, *extra, *controls],
                [gallery, animation, codes],
                api_name=service.endpoint_name(op),
            )


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


def _loss_frame(history: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-step losses of the first image as a long table (step, loss, term)."""
    rows = []
    for term in ("total", "pixel", "domain"):
        if term in history and len(history[term]):
            for step, value in enumerate(history[term][:, 0]):
                rows.append({"step": step, "loss": float(value), "term": term})
    return pd.DataFrame(rows, columns=["step", "loss", "term"])


def build_demo(
    model_ref: str | None = None,
    device: str = "auto",
    limits: service.DemoLimits | None = None,
    examples: list[str] | None = None,
) -> gr.Blocks:
    """Load the model and plugins once and build the app (not launched)."""
    from idinvert.core.plugins import edit_operations, plugin_errors
    from idinvert.hub.api import load_model

    bundle = load_model(model_ref or os.environ.get("IDINVERT_MODEL") or None, device)
    operations = edit_operations()
    problems = [str(e) for e in plugin_errors()]
    try:
        from idinvert.hub.lpips_weights import load_lpips

        lpips_metric = load_lpips(bundle.device)
    except ImportError:
        lpips_metric = None
    if examples is None:
        from idinvert.demo.examples import example_images

        examples = example_images(bundle)
    app = DemoApp(bundle, operations, limits, examples, lpips_metric, problems)
    return app.build()


def launch_kwargs(limits: service.DemoLimits | None = None) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch`` enforcing the upload cap."""
    limits = limits or service.DemoLimits()
    return {"max_file_size": f"{limits.max_upload_mb}mb", "css": CSS, "show_error": True}
