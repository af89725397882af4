"""Background and shirt colour entanglement of attribute edits, measured and projected out.

An attribute edit (smile, glasses, …) should leave the background and the shirt alone. On the
bundled face models many boundaries also shift those colours, because the attribute and the
colours are correlated in the generator's W space. This module measures that and removes the
first-order part, in the spirit of InterFaceGAN's conditional manipulation (project a boundary
normal onto the orthogonal complement of the directions it must not move):

1. **Regions** (:func:`region_maps`): the face renderer is rendered twice per face with the
   background (or shirt) colour set to black and to white, noise and texture off; the difference
   is the visibility of the background (shirt) at every pixel. A pixel belongs to a region when
   it is ≥ ``visible`` visible in ≥ ``agreement`` of ``count`` faces of a validation stream: the
   border where every face shows background, the lower middle where every face wears its shirt.
2. **Colour of a region** (:func:`region_colours`): mean RGB over its pixels, in [0, 1].
3. **Shift of an edit** (:func:`colour_shift`): per image, the mean over channels of
   ``|colour(after) − colour(before)|``, averaged over images, in 8-bit levels (0–255), and the
   *systematic* part ``|mean over images of the signed change|`` (also 8-bit levels, averaged
   over channels).
4. **Colour Jacobian** (:func:`colour_jacobian`): ``J[l, k, :] = mean_n ∂ colour_k(G(w_n)) /
   ∂ w_{n,l}`` over sample codes, ``k`` running over (region, channel) — how each W+ layer
   moves each region colour, to first order.
5. **Projection** (:func:`remove_colour_components`): every layer row ``n_l`` of a boundary is
   replaced by its component orthogonal to the rows of ``J[l]``, renormalised, so moving along
   it changes no region colour to first order on average.

Only the faces renderer (:mod:`idinvert.training.faces`) has the region model; other renderers
get ``None`` from :func:`region_maps`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from idinvert.core.models.generator import Generator
from idinvert.training.splits import DEFAULT_DATA, validation_seed

REGIONS: tuple[str, ...] = ("background", "shirt")


@dataclass(frozen=True)
class RegionMaps:
    """Fixed pixel regions of a renderer's faces.

    Attributes:
        names: region names, :data:`REGIONS` order.
        masks: ``[R, H, W]`` bool, one mask per region (disjoint, each non-empty).
    """

    names: tuple[str, ...]
    masks: torch.Tensor

    def fractions(self) -> dict[str, float]:
        """Share of the image each region covers."""
        return {
            n: round(float(m.float().mean()), 4)
            for n, m in zip(self.names, self.masks, strict=True)
        }


def _visibility(params: object, resolution: int, field: str) -> np.ndarray:
    """``[H, W]`` float in [0, 1]: how much of ``field``'s colour every pixel shows."""
    from idinvert.training.faces import render_face_array

    quiet = dataclasses.replace(params, noise_level=0.0, bg_texture=0.0, bg_blobs=0)
    if field == "background":
        black = dataclasses.replace(quiet, bg_color_a=(0.0,) * 3, bg_color_b=(0.0,) * 3)
        white = dataclasses.replace(quiet, bg_color_a=(1.0,) * 3, bg_color_b=(1.0,) * 3)
    else:
        black = dataclasses.replace(quiet, shirt_color=(0.0,) * 3)
        white = dataclasses.replace(quiet, shirt_color=(1.0,) * 3)
    lo = render_face_array(black, resolution).astype(np.float32)
    hi = render_face_array(white, resolution).astype(np.float32)
    return ((hi - lo).min(axis=2) / 255.0).clip(0.0, 1.0)


def region_maps(
    resolution: int,
    data: str = DEFAULT_DATA,
    count: int = 256,
    seed: int | None = None,
    visible: float = 0.5,
    agreement: float = 0.9,
) -> RegionMaps | None:
    """Background/shirt regions of the faces renderer at ``resolution`` (see the module
    docstring), or ``None`` for another renderer.

    Args:
        resolution: image side.
        data: the renderer (``"module:function"``); only the faces renderer has regions.
        count: faces rendered (4 renders each: each region's colour black and white).
        seed: data set seed (default: the validation split of training stream 0).
        visible: a pixel shows the region in a face when its visibility is ≥ this (the shirt's
            is scaled by the lighting, 0.4–1.2, hence the middle value).
        agreement: fraction of faces that must show the region at the pixel.

    Raises:
        ValueError: a region came out empty (too small a resolution for the rule).
    """
    if data != DEFAULT_DATA:
        return None
    from idinvert.training.faces import face_rng, sample_params

    seed = validation_seed(0) if seed is None else seed
    shown = np.zeros((len(REGIONS), resolution, resolution), dtype=np.float64)
    for index in range(count):
        params = sample_params(face_rng(seed, index))
        for r, field in enumerate(REGIONS):
            shown[r] += _visibility(params, resolution, field) >= visible
    masks = shown / count >= agreement
    empty = [n for n, m in zip(REGIONS, masks, strict=True) if not m.any()]
    if empty:
        raise ValueError(
            f"no pixel is {', '.join(empty)} in {agreement:.0%} of {count} faces at "
            f"{resolution} px; lower the agreement"
        )
    return RegionMaps(REGIONS, torch.from_numpy(masks))


def region_colours(images: torch.Tensor, maps: RegionMaps) -> torch.Tensor:
    """Mean colour of every region.

    Args:
        images: ``[N, 3, H, W]`` in [-1, 1] (the regions' resolution).

    Returns:
        ``[N, R, 3]`` in [0, 1] (differentiable).
    """
    masks = maps.masks.to(images.device, images.dtype)  # [R, H, W]
    weights = masks / masks.flatten(1).sum(1).view(-1, 1, 1)
    return torch.einsum("nchw,rhw->nrc", (images.clamp(-1, 1) + 1) / 2, weights)


def colour_shift(
    before: torch.Tensor, after: torch.Tensor, maps: RegionMaps
) -> dict[str, dict[str, float]]:
    """How far an edit moves every region's colour, in 8-bit levels.

    Args:
        before, after: ``[N, 3, H, W]`` in [-1, 1], the same N images unedited and edited.

    Returns:
        ``{region: {"mean_abs": …, "systematic": …}}`` (see the module docstring).
    """
    delta = (region_colours(after, maps) - region_colours(before, maps)) * 255.0  # [N, R, 3]
    out = {}
    for r, name in enumerate(maps.names):
        d = delta[:, r].double()
        out[name] = {
            "mean_abs": round(float(d.abs().mean()), 3),
            "systematic": round(float(d.mean(0).abs().mean()), 3),
        }
    return out


def colour_jacobian(
    G: Generator, codes: torch.Tensor, maps: RegionMaps, batch_size: int = 64
) -> torch.Tensor:
    """Mean Jacobian of the region colours with respect to every W+ layer.

    Args:
        G: the generator (frozen; its fixed noise is used).
        codes: ``[M, L, D]`` W+ codes to average over.

    Returns:
        ``[L, R·3, D]`` float64: ``mean_n ∂ colour_k / ∂ w_{n,l}`` with ``k = 3·r + channel``,
        colours in [0, 1].
    """
    device = next(G.parameters()).device
    total = torch.zeros(codes.shape[1], len(maps.names) * 3, codes.shape[2], dtype=torch.float64)
    for chunk in codes.split(batch_size):
        wp = chunk.to(device).float().requires_grad_(True)
        with torch.enable_grad():
            colours = region_colours(G.synthesis(wp), maps).flatten(1).sum(0)  # [K]
            for k in range(colours.shape[0]):
                (grad,) = torch.autograd.grad(colours[k], wp, retain_graph=True)
                total[:, k] += grad.sum(0).double().cpu()
    return total / max(codes.shape[0], 1)


def remove_colour_components(direction: np.ndarray, jacobian: torch.Tensor) -> np.ndarray:
    """Project every layer row of a boundary onto the null space of that layer's colour
    Jacobian and renormalise it.

    Args:
        direction: ``[L, D]`` unit rows.
        jacobian: ``[L, K, D]`` from :func:`colour_jacobian`.

    Returns:
        ``[L, D]`` float32 unit rows with ``J[l] · n'_l = 0`` (up to rounding). A row that
        lies (almost) inside the colour directions is returned unchanged, since nothing of it
        would be left to move along.
    """
    out = np.asarray(direction, dtype=np.float64).copy()
    for layer in range(out.shape[0]):
        a = jacobian[layer].double().numpy()  # [K, D]
        u, s, _ = np.linalg.svd(a.T, full_matrices=False)  # [D, K]: the colour directions
        if not s.size or s[0] <= 0:
            continue
        q = u[:, s > 1e-6 * s[0]]
        n = out[layer]
        projected = n - q @ (q.T @ n)
        norm = float(np.linalg.norm(projected))
        if norm > 0.05 * float(np.linalg.norm(n)):
            out[layer] = projected / norm
    return out.astype(np.float32)
