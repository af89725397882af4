"""Shared fixtures: models built from the official-format reference vectors and tiny random
models, written as real model directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import vectors as V

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """A demo server sets the process's torch threads (DemoLimits.torch_threads); later tests
    get the count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (training code, small ops: faster and steadier)."""
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def vectors_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference vector set's official checkpoints converted with ``idinvert convert``
    (random VGG16 weights from the set's recipe as the perceptual network)."""
    from idinvert.hub.convert import convert_checkpoints

    root = tmp_path_factory.mktemp("vectors_model")
    vgg = root / "vgg16.pth"
    torch.save(V.random_vgg_state(V.config()["seeds"]["vgg_seed"]), vgg)
    d = V.vectors_dir()
    return convert_checkpoints(
        d / "generator.pth", d / "encoder.pth", root / "model", perceptual_path=vgg
    )


def build_tiny_bundle(
    resolution: int = 32, w_dim: int = 16, seed: int = 0, perceptual: bool = False
):
    """A small random model (fast tests): G/E with tiny widths, optional random caffe VGG."""
    from idinvert.core.modeldir import ImageConfig, ModelBundle, ModelConfig, freeze
    from idinvert.core.models.encoder import Encoder, EncoderConfig
    from idinvert.core.models.generator import Generator, GeneratorConfig
    from idinvert.core.models.perceptual import PerceptualConfig, PerceptualNet

    torch.manual_seed(seed)
    g_cfg = GeneratorConfig(
        resolution=resolution,
        z_dim=w_dim,
        w_dim=w_dim,
        mapping_layers=2,
        fmaps_base=256,
        fmaps_max=16,
    )
    e_cfg = EncoderConfig(resolution=resolution, w_dim=w_dim, channels_base=4, channels_max=16)
    g, e = Generator(g_cfg), Encoder(e_cfg)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if "mapping" in name and name.endswith("fc.weight"):
                p.normal_(0, 1 / g_cfg.mapping_lr_mul)
            elif name.endswith("apply_noise.weight"):
                p.normal_(0, 0.1)
    p_net = PerceptualNet(PerceptualConfig()) if perceptual else None
    if p_net is not None:
        p_net.load_state_dict(
            {k: v for k, v in V.random_vgg_state(11).items() if k in p_net.state_dict()}
        )
    bundle = ModelBundle(
        ModelConfig("tiny", g_cfg, e_cfg, p_net.config if p_net else None, ImageConfig(resolution)),
        g,
        e,
        p_net,
    )
    for net in bundle.networks():
        freeze(net)
    return bundle


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32 px random model directory without a perceptual net (use --perceptual-weight 0)."""
    from idinvert.core.modeldir import save_model_dir

    return save_model_dir(build_tiny_bundle(), tmp_path_factory.mktemp("tiny") / "tiny32")


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model plus two random boundaries (so the demo's quick-edit panel exists)."""
    import numpy as np

    from idinvert.core.boundaries import Boundary, save_boundary
    from idinvert.core.modeldir import save_model_dir

    root = save_model_dir(build_tiny_bundle(), tmp_path_factory.mktemp("demo") / "model")
    (root / "boundaries").mkdir()
    rng = np.random.default_rng(0)
    for name, layers in (("smile", [0, 1, 2]), ("age", [3, 4])):
        v = rng.standard_normal((8, 16)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        save_boundary(Boundary(name, v, layers), root / "boundaries" / f"{name}.safetensors")
    return root
