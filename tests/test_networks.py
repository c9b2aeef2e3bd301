import mxnet as mx
import numpy as np
import pytest

from gluon_pdqn import networks
from gluon_pdqn.config import NetworkConfig
from gluon_pdqn.envs import EnvSpec

VECTOR = EnvSpec("v", (4,), np.dtype(np.float32), (4,), 1, 3, False)
IMAGE = EnvSpec("i", (4, 84, 84), np.dtype(np.uint8), (84, 84), 4, 6, True)


def _inputs(spec, batch=5):
    rng = np.random.default_rng(0)
    if spec.obs_dtype == np.uint8:
        return mx.nd.array(rng.integers(0, 256, (batch,) + spec.obs_shape), dtype=np.uint8)
    return mx.nd.array(rng.normal(size=(batch,) + spec.obs_shape), dtype=np.float32)


@pytest.mark.parametrize("spec,name", [(VECTOR, "mlp"), (IMAGE, "nature_cnn"), (IMAGE, "efficient_cnn")])
@pytest.mark.parametrize("dueling", [False, True])
def test_hybridized_and_imperative_outputs_agree(spec, name, dueling):
    net = networks.build(NetworkConfig(name=name, dueling=dueling, hidden=(32, 16)), spec, prefix="n_")
    net.initialize(mx.init.Xavier())
    x = _inputs(spec)
    imperative = net(x).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    hybrid = net(x).asnumpy()
    assert imperative.shape == (5, spec.n_actions)
    np.testing.assert_allclose(imperative, hybrid, rtol=1e-5, atol=1e-6)


def test_auto_picks_a_cnn_for_images_and_an_mlp_otherwise():
    assert networks.resolve_name(NetworkConfig(name="auto"), IMAGE) == "nature_cnn"
    assert networks.resolve_name(NetworkConfig(name="auto"), VECTOR) == "mlp"


def test_dueling_head_centres_the_advantages():
    net = networks.build(NetworkConfig(name="mlp", dueling=True, hidden=(8,)), VECTOR, prefix="d_")
    net.initialize(mx.init.Xavier())
    x = _inputs(VECTOR)
    q = net(x).asnumpy()
    value = net.head.value(net.body(x)).asnumpy()
    # Q = V + A - mean(A), so the mean over actions of Q is V.
    np.testing.assert_allclose(q.mean(axis=1, keepdims=True), value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dueling", [False, True])
def test_numpy_copy_of_the_mlp_gives_the_same_q_values(dueling):
    net = networks.build(NetworkConfig(name="mlp", dueling=dueling, hidden=(32, 32)), VECTOR, prefix="m_")
    net.initialize(mx.init.Xavier())
    x = _inputs(VECTOR, batch=9)
    expected = net(x).asnumpy()
    policy = networks.NumpyMLP(net)
    policy.load(np.concatenate([p.data().asnumpy().ravel() for p in policy.parameters()]))
    np.testing.assert_allclose(policy(x.asnumpy()), expected, rtol=1e-5, atol=1e-6)


SMALL = EnvSpec("s", (3, 10, 10), np.dtype(np.uint8), (3, 10, 10), 1, 4, False)
STACKED = EnvSpec("k", (2, 3, 40, 40), np.dtype(np.uint8), (3, 40, 40), 2, 4, False)
FLOAT_IMAGE = EnvSpec("f", (4, 10, 10), np.dtype(np.float32), (4, 10, 10), 1, 4, False)


@pytest.mark.parametrize("spec", [SMALL, FLOAT_IMAGE, EnvSpec("k", (2, 3, 10, 10), np.dtype(np.uint8), (3, 10, 10), 2, 4, False)],
                         ids=["uint8", "float", "stacked"])
@pytest.mark.parametrize("dueling,noisy", [(False, False), (True, False), (True, True)])
def test_numpy_copy_of_the_small_cnn_gives_the_same_q_values(spec, dueling, noisy):
    net = networks.build(NetworkConfig(name="small_cnn", dueling=dueling, noisy=noisy), spec, prefix="c_")
    net.initialize(mx.init.Xavier())
    networks.silence_noise(net)  # (the copy starts silent)
    x = _inputs(spec, batch=7)
    expected = net(x).asnumpy()
    policy = networks.numpy_copy(net)
    assert isinstance(policy, networks.NumpyConvNet)
    policy.load(np.concatenate([p.data().asnumpy().ravel() for p in policy.parameters()]))
    np.testing.assert_allclose(policy(x.asnumpy()), expected, rtol=1e-5, atol=1e-5)


def test_only_cheap_convolutions_get_a_numpy_copy():
    """MinAtar's network does; the Nature CNN over Atari's frames, whose convolutions numpy computes slowly, does not."""
    small = networks.build(NetworkConfig(name="small_cnn"), SMALL, prefix="a_")
    nature = networks.build(NetworkConfig(name="nature_cnn"), IMAGE, prefix="b_")
    assert small.numpy_acting and not nature.numpy_acting
    assert networks.numpy_copy(nature) is None


def test_auto_picks_the_cnn_that_fits_the_image():
    assert networks.resolve_name(NetworkConfig(name="auto"), SMALL) == "small_cnn"
    assert networks.resolve_name(NetworkConfig(name="auto"), STACKED) == "nature_cnn"
    assert networks.resolve_name(NetworkConfig(name="auto"), FLOAT_IMAGE) == "small_cnn"
    assert networks.image_shape(STACKED) == (6, 40, 40)


@pytest.mark.parametrize("spec", [SMALL, STACKED, FLOAT_IMAGE])
def test_cnns_take_small_stacked_and_float_images_hybridized_or_not(spec):
    net = networks.build(NetworkConfig(name="auto"), spec, prefix="c_")
    net.initialize(mx.init.Xavier())
    x = _inputs(spec)
    imperative = net(x).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    np.testing.assert_allclose(net(x).asnumpy(), imperative, rtol=1e-5, atol=1e-6)
    assert imperative.shape == (5, spec.n_actions)
    # The stack and channel axes are merged: the first convolution sees stack x channels input channels.
    assert net.features[0].weight.shape[1] == networks.image_shape(spec)[0]


def test_uint8_frames_are_scaled_to_unit_range_and_floats_are_not():
    uint8_net = networks.build(NetworkConfig(name="small_cnn"), SMALL, prefix="u_")
    float_net = networks.build(NetworkConfig(name="small_cnn"), FLOAT_IMAGE, prefix="f_")
    frames = mx.nd.full((1, 3, 10, 10), 255, dtype=np.uint8)
    assert uint8_net.preprocess(mx.nd, frames).max().asscalar() == pytest.approx(1.0)
    assert float_net.preprocess(mx.nd, frames.astype("float32") / 255).max().asscalar() == pytest.approx(1.0)


def test_a_cnn_too_big_for_the_images_is_refused_in_one_line():
    from gluon_pdqn.errors import UserError

    with pytest.raises(UserError, match=r"10x10 images are too small for network.name=nature_cnn .*small_cnn"):
        networks.build(NetworkConfig(name="nature_cnn"), SMALL, prefix="x_")
    with pytest.raises(UserError, match="needs image observations"):
        networks.build(NetworkConfig(name="small_cnn"), VECTOR, prefix="y_")


def test_the_efficient_cnn_is_data_efficient_rainbows_network_and_much_smaller():
    efficient = networks.build(NetworkConfig(name="efficient_cnn"), IMAGE, prefix="e_")
    nature = networks.build(NetworkConfig(name="nature_cnn"), IMAGE, prefix="n_")
    for net in (efficient, nature):
        net.initialize(mx.init.Xavier())
        net(_inputs(IMAGE))
    shapes = [p.shape for p in efficient.collect_params().values()]
    assert shapes[:2] == [(32, IMAGE.obs_shape[0], 5, 5), (32,)] and (64, 32, 5, 5) in shapes
    count = lambda net: sum(p.data().size for p in net.collect_params().values())  # noqa: E731
    assert count(nature) > 6 * count(efficient)


@pytest.mark.parametrize("dueling", [False, True])
def test_torch_init_draws_weights_and_biases_as_pytorch_layers_do(dueling):
    """network.init=torch: every dense and convolution layer uniform in +-1/sqrt(fan_in), biases too (PyTorch's
    defaults, what its baselines start from); the target starts as the online network; the seed decides them."""
    from gluon_pdqn.config import Config
    from gluon_pdqn.learners import SingleLearner

    spec = EnvSpec("m", (4, 10, 10), np.dtype(np.uint8), (10, 10), 1, 3, True)  # MinAtar's grids: the small CNN
    settings = {"network.init": "torch", "network.dueling": dueling}
    mx.random.seed(3)  # (a run seeds it with run.seed: build.py)
    learner = SingleLearner(Config().replace(settings), spec, mx.cpu())
    layers = {}
    for name, param in networks.structural_params(learner.nets.online).items():
        layers.setdefault(name.rpartition(".")[0], {})[name.rpartition(".")[2]] = param.data().asnumpy()
    assert len(layers) == (4 if dueling else 3)  # convolution, dense, head (advantage and value when dueling)
    for name, layer in layers.items():
        bound = 1.0 / np.sqrt(np.prod(layer["weight"].shape[1:]))
        for values in (layer["weight"], layer["bias"]):
            assert np.abs(values).max() <= bound, name
            assert values.all(), name  # biases too: not zero
            if values.size >= 16:
                assert np.abs(values).max() > 0.5 * bound, name  # drawn over the whole range
    for name, param in networks.structural_params(learner.nets.target).items():
        np.testing.assert_array_equal(param.data().asnumpy(), layers[name.rpartition(".")[0]][name.rpartition(".")[2]])
    mx.random.seed(3)
    again = SingleLearner(Config().replace(settings), spec, mx.cpu())
    first, second = (networks.structural_params(x.nets.online) for x in (learner, again))
    for name in first:
        np.testing.assert_array_equal(first[name].data().asnumpy(), second[name].data().asnumpy())
    xavier = SingleLearner(Config().replace({**settings, "network.init": "xavier"}), spec, mx.cpu())
    assert all(not p.data().asnumpy().any() for n, p in networks.structural_params(xavier.nets.online).items()
               if n.endswith("bias"))


def test_a_noisy_small_cnn_acts_through_its_numpy_copy_with_the_networks_noise_and_weights():
    """MinAtar's network acts through its numpy copy (0.82x the wall time of minatar-rainbow's loop), which must
    draw the noise the network would and follow every update."""
    from gluon_pdqn.config import Config
    from gluon_pdqn.learners.qnets import QNetworks

    cfg = Config().replace({"network.name": "small_cnn", "network.noisy": "true", "network.dueling": "true"})
    nets = QNetworks(cfg, SMALL, [mx.cpu()], per_action=5)
    assert isinstance(nets._numpy_policy, networks.NumpyConvNet)
    obs = _inputs(SMALL, batch=3).asnumpy()
    for _ in range(2):
        replay = np.random.default_rng()
        replay.bit_generator.state = nets.noise_rng.bit_generator.state
        acted = nets.outputs(obs)
        networks.resample_noise(nets.online, replay)
        np.testing.assert_allclose(acted, nets.online(mx.nd.array(obs, dtype=np.uint8)).asnumpy(), rtol=1e-4,
                                   atol=1e-4)
        for param in nets.params:  # an update
            param.set_data(param.data() * 1.5 + 0.01)
        nets.updated()
