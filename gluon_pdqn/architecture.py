"""Which network a run trains, decided from its settings and its observations alone (numpy only).

The command line decides this before MXNet loads (a CNN gets every core, see ``give_mxnet_every_core``);
``networks`` builds what it names.
"""
from __future__ import annotations

from .config import NetworkConfig
from .envs import EnvSpec

# (filters, kernel, stride) per convolution, then the width of the dense layer.
NATURE_CNN = ((32, 8, 4), (64, 4, 2), (64, 3, 1)), 512  # Mnih et al. (2015)
SMALL_CNN = ((16, 3, 1),), 128  # MinAtar's DQN (Young & Tian 2019)
# Data-efficient Rainbow's network (van Hasselt, Hessel & Aslanides 2019): on 84x84 frames about 6x fewer
# multiply-adds and 8x fewer parameters than the Nature CNN, so an update costs about a quarter as much on a CPU.
EFFICIENT_CNN = ((32, 5, 5), (64, 5, 5)), 256
CNNS = {"nature_cnn": NATURE_CNN, "small_cnn": SMALL_CNN, "efficient_cnn": EFFICIENT_CNN}


def min_image_side(convolutions) -> int:
    """The smallest height (or width) that leaves at least one output position after ``convolutions``."""
    side = 1
    for _, kernel, stride in reversed(convolutions):
        side = (side - 1) * stride + kernel
    return side


def conv_output_size(convolutions, image: tuple[int, int, int]) -> int:
    """Values per example after ``convolutions`` (no padding) over ``image`` (channels, height, width), flattened."""
    height, width = image[1:]
    for _, kernel, stride in convolutions:
        height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
    return convolutions[-1][0] * height * width


def conv_multiply_adds(convolutions, image: tuple[int, int, int]) -> int:
    """Multiply-adds of ``convolutions`` (no padding) over one ``image`` (channels, height, width)."""
    channels, height, width = image
    total = 0
    for filters, kernel, stride in convolutions:
        height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
        total += height * width * filters * channels * kernel * kernel
        channels = filters
    return total


def image_shape(spec: EnvSpec) -> tuple[int, int, int] | None:
    """(channels, height, width) a CNN sees for ``spec``'s observations, or None if they are not images.

    Image observations reach the agent channels first: (C, H, W), or (stack, C, H, W) when stacked (see
    ``envs.observations``); Atari's (4, 84, 84) is a stack of grayscale frames taken as 4 channels.
    """
    shape = spec.obs_shape
    if len(shape) == 3:
        return shape
    if len(shape) == 4:
        return (shape[0] * shape[1], shape[2], shape[3])
    return None


def resolve_name(cfg: NetworkConfig, spec: EnvSpec) -> str:
    """The registered network ``cfg.name`` stands for.

    ``auto``: for packed observations (Discrete, Dict...) the encoded network (a CNN for each image part, dense
    layers over all parts); the Nature CNN for images it fits (Atari's 84x84 and anything from 36x36), the small
    CNN for smaller images (MinAtar's 10x10 grids), an MLP for everything else.
    """
    if cfg.name != "auto":
        return cfg.name
    if spec.parts:
        return "encoded"
    image = image_shape(spec)
    if image is None:
        return "mlp"
    return "nature_cnn" if min(image[1:]) >= min_image_side(NATURE_CNN[0]) else "small_cnn"


# Networks whose kernels are big enough to share between cores (convolutions over Atari-sized frames). The small
# CNN over MinAtar's 10x10 grids is not among them: like an MLP's, its kernels are too short to split.
SHARED_CORE_NETWORKS = ("nature_cnn", "efficient_cnn")


def uses_every_core(cfg: NetworkConfig, spec: EnvSpec) -> bool:
    """Whether the run's network is one whose kernels run faster spread over every core."""
    return resolve_name(cfg, spec) in SHARED_CORE_NETWORKS
