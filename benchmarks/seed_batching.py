"""Would several seeds trained in one process, sharing each engine call, train faster per seed?

The idea (how JAX toolkits vectorise seeds): S independent Q-networks held as one, their layers grouped (a
convolution with ``num_group=S``, dense layers as ``batch_dot`` over a leading seed axis), so one DQN update of
all S seeds costs one set of engine calls instead of S. It pays only where an update's time is per-call
overhead rather than arithmetic. This measures it before anything is built: the milliseconds of one DQN update
(target forward, loss forward and backward, the optimizer) of S grouped networks, per seed, for the MinAtar
network (the `minatar` preset's: one 3x3 convolution of 16 filters on 10x10 frames, 128 units, batch 32,
centred RMSprop) and the CartPole MLP (the `cartpole` preset's: 128x128, batch 64, Adam), one MXNet thread.

    python benchmarks/seed_batching.py [--seeds 1,2,4,8,16] [--updates 300]
"""
from __future__ import annotations

import os
import statistics
import time

import click

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from mxnet import autograd, gluon, nd  # noqa: E402

from results_file import write_results  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


class GroupedMinAtarNet(gluon.HybridBlock):
    """S MinAtar Q-networks as one: input (batch, S x channels, 10, 10), output (S, batch, actions)."""

    def __init__(self, seeds: int, channels: int = 4, actions: int = 3):
        super().__init__()
        self.seeds = seeds
        with self.name_scope():
            self.conv_weight = self.params.get("conv_weight", shape=(seeds * 16, channels, 3, 3))
            self.conv_bias = self.params.get("conv_bias", shape=(seeds * 16,))
            self.hidden_weight = self.params.get("hidden_weight", shape=(seeds, 1024, 128))
            self.hidden_bias = self.params.get("hidden_bias", shape=(seeds, 1, 128))
            self.out_weight = self.params.get("out_weight", shape=(seeds, 128, actions))
            self.out_bias = self.params.get("out_bias", shape=(seeds, 1, actions))

    def hybrid_forward(self, F, x, conv_weight, conv_bias, hidden_weight, hidden_bias, out_weight, out_bias):
        h = F.relu(F.Convolution(x, conv_weight, conv_bias, kernel=(3, 3), num_filter=self.seeds * 16,
                                 num_group=self.seeds))
        h = F.reshape(h, (0, self.seeds, -1)).transpose((1, 0, 2))  # (S, batch, 1024)
        h = F.relu(F.broadcast_add(F.batch_dot(h, hidden_weight), hidden_bias))
        return F.broadcast_add(F.batch_dot(h, out_weight), out_bias)


class GroupedMLP(gluon.HybridBlock):
    """S CartPole MLPs as one: input (S, batch, 4), output (S, batch, actions)."""

    def __init__(self, seeds: int, inputs: int = 4, hidden: int = 128, actions: int = 2):
        super().__init__()
        with self.name_scope():
            for i, (n_in, n_out) in enumerate([(inputs, hidden), (hidden, hidden), (hidden, actions)]):
                setattr(self, f"weight{i}", self.params.get(f"weight{i}", shape=(seeds, n_in, n_out)))
                setattr(self, f"bias{i}", self.params.get(f"bias{i}", shape=(seeds, 1, n_out)))

    def hybrid_forward(self, F, x, **params):
        for i in range(3):
            x = F.broadcast_add(F.batch_dot(x, params[f"weight{i}"]), params[f"bias{i}"])
            if i < 2:
                x = F.relu(x)
        return x


class OneSeed(gluon.HybridBlock):
    """One seed's network as one seed runs today (Gluon's Conv2D and Dense), its output shaped (1, batch,
    actions) like the grouped networks'."""

    def __init__(self, network: str, actions: int):
        super().__init__()
        with self.name_scope():
            self.body = gluon.nn.HybridSequential()
            if network == "minatar":
                self.body.add(gluon.nn.Conv2D(16, 3, activation="relu"))
                self.body.add(gluon.nn.Dense(128, activation="relu"))
            else:
                self.body.add(gluon.nn.Dense(128, activation="relu"), gluon.nn.Dense(128, activation="relu"))
            self.body.add(gluon.nn.Dense(actions))

    def hybrid_forward(self, F, x):
        return F.expand_dims(self.body(x), axis=0)


NETWORKS = {
    "minatar": dict(make=GroupedMinAtarNet, batch=32, actions=3, optimizer="rmsprop",
                    optimizer_params={"learning_rate": 2.5e-4, "gamma1": 0.95, "epsilon": 0.01, "centered": True},
                    observations=lambda seeds, batch: np.random.rand(batch, seeds * 4, 10, 10)),
    "cartpole": dict(make=GroupedMLP, batch=64, actions=2, optimizer="adam", optimizer_params={"learning_rate": 1e-3},
                     observations=lambda seeds, batch: np.random.rand(seeds, batch, 4)),
}


def update_ms(network: str, seeds: int, updates: int) -> float:
    """Milliseconds of one DQN update of ``seeds`` grouped networks (the median of 5 blocks of updates); 0
    seeds: one seed's network as it runs today."""
    spec = NETWORKS[network]
    if seeds == 0:
        online, target = OneSeed(network, spec["actions"]), OneSeed(network, spec["actions"])
    else:
        online, target = spec["make"](seeds), spec["make"](seeds)
    for net in (online, target):
        net.initialize(mx.init.Uniform(0.05))
        net.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(online.collect_params(), spec["optimizer"], spec["optimizer_params"])
    batch, actions = spec["batch"], spec["actions"]
    shape = spec["observations"](max(seeds, 1), batch).shape
    if seeds == 0:
        shape = shape[1:] if network == "cartpole" else shape
    observations, next_observations = nd.array(np.random.rand(*shape)), nd.array(np.random.rand(*shape))
    seeds = max(seeds, 1)
    chosen = nd.array(np.random.randint(0, actions, (seeds, batch)))
    rewards, dones = nd.array(np.random.rand(seeds, batch)), nd.zeros((seeds, batch))

    def update():  # DQN's: the target network's max, Huber loss, one optimizer step
        targets = rewards + 0.99 * (1 - dones) * target(next_observations).max(axis=2)
        with autograd.record():
            # Each seed's loss is its own batch mean; their sum leaves each seed's gradient its own.
            loss = nd.smooth_l1(online(observations).pick(chosen, axis=2) - targets).mean(axis=1).sum()
        loss.backward()
        trainer.step(1)

    for _ in range(30):
        update()
    nd.waitall()
    blocks = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(updates // 5):
            update()
        nd.waitall()
        blocks.append(1000.0 * (time.perf_counter() - start) / (updates // 5))
    return statistics.median(blocks)


@click.command()
@click.option("--seeds", "seed_counts", default="1,2,4,8,16", show_default=True, help="Numbers of grouped seeds.")
@click.option("--updates", default=300, show_default=True)
@click.option("--output", default=os.path.join(HERE, "results", "seed_batching.json"), show_default=True)
def main(seed_counts, updates, output):
    counts = [int(s) for s in seed_counts.split(",")]
    results = {"benchmark": "seed_batching", "mxnet_threads": 1, "load_average_before": os.getloadavg(),
               "updates": updates, "rows": []}
    for network in NETWORKS:
        today = update_ms(network, 0, updates)
        results["rows"].append({"network": network, "seeds": "one, ungrouped", "update_ms": round(today, 3)})
        click.echo(f"{network}, one seed ungrouped (as today): {today:.2f} ms an update")
        for seeds in counts:
            ms = update_ms(network, seeds, updates)
            row = {"network": network, "seeds": seeds, "update_ms": round(ms, 3), "per_seed_ms": round(ms / seeds, 3),
                   "per_seed_speedup_over_today": round(today / (ms / seeds), 2)}
            results["rows"].append(row)
            click.echo(f"{network}, {seeds} grouped: {ms:.2f} ms an update, {ms / seeds:.3f} per seed "
                       f"({row['per_seed_speedup_over_today']:.2f}x the ungrouped seed's rate)")
    write_results(results, output)


if __name__ == "__main__":
    main()
