"""Export a trained Q-network for deployment: MXNet's symbol and parameters, and ONNX.

The exported graph maps a batch of observations, exactly as the agent takes them (``preprocessing.json`` says
how to make them from the environment's), to one Q-value per action; the greedy action is their argmax. A
distributional network (C51, QR-DQN) is exported with its expected Q-values as the output.
"""
from __future__ import annotations

import json
import os

import mxnet as mx
import numpy as np
from mxnet import gluon

from . import checkpoint, envs
from .errors import UserError
from .build import exportable, load_policy

FORMATS = ("mxnet", "onnx")
PREFIX = "qnetwork"  # files: qnetwork-symbol.json, qnetwork-0000.params, qnetwork.onnx, preprocessing.json


class ExpectedQ(gluon.HybridBlock):
    """A distributional network's expected Q-values (batch, n_actions), as a graph ONNX can take: the C51
    support is a constant of the graph, not an operator that makes it."""

    def __init__(self, network: gluon.HybridBlock, model, n_actions: int, **kwargs):
        super().__init__(**kwargs)
        self.network, self.model, self.n_actions = network, model, n_actions
        if model.algo == "c51":
            with self.name_scope():
                self.support = self.params.get_constant("support", model.support().reshape(1, 1, -1))

    def hybrid_forward(self, F, obs, support=None):
        values = F.reshape(self.network(obs), shape=(0, self.n_actions, self.model.per_action))
        return self.model.expected_q_graph(F, values, support)


def input_dtype(part) -> str:
    """The dtype of a packed observation part's input to the exported graph: images of bytes as uint8 (bool
    cells as uint8 0 or 1), everything else float32."""
    return "uint8" if part.kind == "image" and part.scale != 1.0 else "float32"


class NamedInputs(gluon.HybridBlock):
    """A network over packed observations (Discrete, Dict...) with one input per part, each as the environment
    gives it (an image channels last, a Discrete's index as it is), packed inside the graph as the agent's
    ``envs.observations.PackedObservation`` packs it."""

    def __init__(self, network: gluon.HybridBlock, parts, **kwargs):
        super().__init__(**kwargs)
        self.network, self.parts = network, tuple(parts)
        with self.name_scope():
            for index, part in enumerate(self.parts):
                if any(part.starts):  # (an attribute, so that Gluon hands it to hybrid_forward)
                    setattr(self, f"starts{index}",
                            self.params.get_constant(f"starts{index}", np.array([part.starts], np.float32)))

    def hybrid_forward(self, F, *inputs, **constants):
        pieces = []
        for index, (part, value) in enumerate(zip(self.parts, inputs)):
            x = F.cast(value, "float32")
            if part.boolean:
                x = x * 255.0
            if part.channels_last:
                x = F.transpose(x, axes=(0, 3, 1, 2))
            x = F.reshape(x, shape=(0, -1))
            if f"starts{index}" in constants:
                x = F.broadcast_sub(x, constants[f"starts{index}"])
            pieces.append(x)
        return self.network(F.concat(*pieces, dim=1) if len(pieces) > 1 else pieces[0])


def example_inputs(spec) -> list:
    """Zeros of each input the exported graph takes (one batch row)."""
    if not spec.parts:
        return [mx.nd.zeros((1, *spec.obs_shape), dtype=spec.obs_dtype)]
    return [mx.nd.zeros((1, *p.source_shape), dtype=input_dtype(p)) for p in spec.parts]


def input_names(spec) -> list[str]:
    """The exported graph's input names: ``data``, or a packed observation's keys."""
    return [p.key or "observation" for p in spec.parts] if spec.parts else ["data"]


def _name_inputs(symbol_file: str, names: list[str]) -> None:
    """Rename MXNet's ``data0``, ``data1``... inputs of a multi-input export to ``names``."""
    with open(symbol_file) as f:
        graph = json.load(f)
    renames = {f"data{i}": name for i, name in enumerate(names)}
    for node in graph["nodes"]:
        if node["op"] == "null" and node["name"] in renames:
            node["name"] = renames[node["name"]]
    with open(symbol_file, "w") as f:
        json.dump(graph, f)


def _without_noise(learner, cfg, spec) -> gluon.HybridBlock:
    """The network of a noisy learner with ordinary layers holding its means: deployment acts on the means."""
    from dataclasses import replace

    from . import networks
    from .networks import structural_params

    plain = networks.build(replace(cfg.network, noisy=False), spec, prefix="deployed_",
                           per_action=learner.return_model.per_action)
    plain.initialize(ctx=mx.cpu(0))
    plain(mx.nd.zeros((1, *spec.obs_shape), dtype=spec.obs_dtype))
    means = structural_params(learner.online)
    for name, param in structural_params(plain).items():
        param.set_data(means[name].data(mx.cpu(0)))
    return plain


def preprocessing(cfg, spec) -> dict:
    """What a deployment must do to the environment's observations before the graph sees them."""
    if spec.parts:
        inputs = {"inputs": [{"name": name, "shape": ["batch", *p.source_shape], "dtype": input_dtype(p)}
                             for name, p in zip(input_names(spec), spec.parts)],
                  "dropped_keys": list(spec.dropped_keys)}
    else:
        inputs = {"input_name": "data", "input_shape": ["batch", *spec.obs_shape], "input_dtype": str(spec.obs_dtype)}
    steps = {
        "env": cfg.env.id,
        **inputs,
        "output": (f"Q-values, shape (batch, {spec.n_actions}); the greedy action is their argmax"
                   + ("; the expected return of the network's distribution" if cfg.agent.algo != "dqn" else "")
                   + ("; noisy layers are exported with their means (no noise)" if cfg.network.noisy else "")),
        "n_actions": spec.n_actions,
        "frame_stack": spec.frame_stack,
        "conversion": spec.conversion or "none: the environment's observations as they are",
        "scaling": ("inside the graph: uint8 pixels are cast to float32 and multiplied by 1/255"
                    if spec.obs_dtype == np.uint8 else "none"),
        **({"packing": "inside the graph: each input as the environment gives it (images channels last, a "
                       "Discrete's index), one-hot encoded where it is an index"} if spec.parts else {}),
    }
    if spec.frame_stack > 1:
        steps["stacking"] = (f"the last {spec.frame_stack} frames, oldest first, on axis 1; at an episode's start "
                             "the first frame is repeated")
    if spec.is_atari:
        steps["atari_pipeline"] = {
            "frameskip": 1, "repeat_action_probability": cfg.env.sticky_actions, "full_action_space": False,
            "wrapper": "gymnasium.wrappers.AtariPreprocessing", "noop_max": cfg.env.noop_max,
            "frame_skip": cfg.env.frame_skip, "screen_size": 84, "grayscale_obs": True, "scale_obs": False,
            "max_pooling": "over the last two frames of each skip", "fire_reset": "press FIRE after reset where the "
            "game needs it"}
    return steps


def export(bundle: str, out_dir: str, formats: tuple[str, ...]) -> dict[str, str]:
    """Write the greedy Q-network of ``bundle`` in ``formats`` to ``out_dir``; returns the files written."""
    cfg = checkpoint.config_of(bundle)
    exportable(cfg)
    spec = envs.describe(cfg.env)
    learner = load_policy(bundle, cfg, spec, [mx.cpu(0)])
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --out {out_dir}: {e.strerror}") from None
    network = learner.online if not cfg.network.noisy else _without_noise(learner, cfg, spec)
    if learner.return_model.distributional:
        network = ExpectedQ(network, learner.return_model, spec.n_actions, prefix="expected_q_")
        network.initialize(ctx=mx.cpu(0))  # (only the support constant; the network's parameters are loaded)
    if spec.parts:
        network = NamedInputs(network, spec.parts, prefix="named_inputs_")
        network.params.initialize(ctx=mx.cpu(0))  # its own constants only; the network's parameters are loaded
    network.hybridize()
    network(*example_inputs(spec))  # export needs one traced call
    prefix = os.path.join(out_dir, PREFIX)
    network.export(prefix, epoch=0)
    written = {"symbol": f"{prefix}-symbol.json", "params": f"{prefix}-0000.params"}
    if spec.parts:
        _name_inputs(written["symbol"], input_names(spec))
    if "onnx" in formats:
        written["onnx"] = _to_onnx(written["symbol"], written["params"], spec, f"{prefix}.onnx")
    if "mxnet" not in formats:
        for name in ("symbol", "params"):
            os.remove(written.pop(name))
    written["preprocessing"] = os.path.join(out_dir, "preprocessing.json")
    with open(written["preprocessing"], "w") as f:
        json.dump({"checkpoint": os.path.abspath(bundle), **preprocessing(cfg, spec)}, f, indent=2)
    return written


def _to_onnx(symbol_file: str, params_file: str, spec, path: str) -> str:
    try:
        import onnx
    except ImportError:
        raise UserError("--format onnx needs the onnx package: pip install onnx==1.16.2 (the version pinned in "
                        "requirements-export.txt)") from None
    from mxnet import onnx as mx_onnx

    try:
        examples = example_inputs(spec)
        mx_onnx.export_model(symbol_file, params_file, in_shapes=[x.shape for x in examples],
                             in_types=[x.dtype for x in examples], onnx_file_path=path, dynamic=True,
                             dynamic_input_shapes=[(None, *x.shape[1:]) for x in examples])
    except Exception as error:  # noqa: BLE001 (the converter raises many kinds; the MXNet files are written)
        raise UserError(f"MXNet's ONNX converter failed on this network ({type(error).__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else ''}); --format mxnet still works") from None
    # MXNet's exporter lists the weights among the graph's inputs too; ONNX runtimes then cannot fold them as
    # constants (and warn). Keep only the observations as inputs.
    model = onnx.load(path)
    weights = {initializer.name for initializer in model.graph.initializer}
    for graph_input in [i for i in model.graph.input if i.name in weights]:
        model.graph.input.remove(graph_input)
    onnx.save(model, path)
    return path
