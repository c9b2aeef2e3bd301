"""Checkpoint integrity: every file of every kind of bundle is verified against its marker before it is read."""
import json
import os
import pathlib
import shutil

import pytest

from gluon_pdqn import checkpoint
from gluon_pdqn.config import load_preset
from gluon_pdqn.errors import UserError
from gluon_pdqn.run.loop import Training

from test_cli import assert_one_line_error, gluon_pdqn, trained_run  # noqa: F401 (a fixture)

QUICK = {"run.total_env_steps": 400, "run.eval_every": 0, "run.checkpoint_every": 200, "run.log_every": 200,
         "replay.learning_starts": 100, "network.hidden": "16,16", "run.stop_return": None}
# Bundles of every learner placement's files: a noisy single learner (noise_rng.json), model parallel (an
# optimizer per stage), an ensemble (a directory per member, ensemble.json), and async (no replay).
KINDS = {
    "single-noisy": ("cartpole", {"network.noisy": True}),
    "model": ("cartpole", {"run.mode": "model", "run.ctx": "cpu:0,cpu:1"}),
    "ensemble": ("cartpole", {"run.mode": "ensemble", "run.ctx": "cpu:0,cpu:1"}),
    "async": ("async", {"actors.count": 2}),
}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    made = {}
    for kind, (preset, settings) in KINDS.items():
        run_dir = tmp_path_factory.mktemp(kind)
        Training(load_preset(preset).replace({**QUICK, **settings}), str(run_dir)).run()
        made[kind] = run_dir
    return made


def _files(bundle: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file() and p.name != checkpoint.MARKER)


def _damaged_copy(run_dir: pathlib.Path, tmp_path: pathlib.Path, name: str, damage: str) -> pathlib.Path:
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    bundle = pathlib.Path(checkpoint.list_complete(str(copy))[-1])
    path = bundle / name
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "emptied":
        path.write_bytes(b"")
    else:  # one bit flipped in the middle
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1:])
    return bundle


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped", "emptied"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_file_of_every_bundle_is_verified_before_it_is_read(bundles, tmp_path, kind, damage):
    run_dir = bundles[kind]
    newest = pathlib.Path(checkpoint.list_complete(str(run_dir))[-1])
    names = _files(newest)
    expected = {"params.params", "state.json", "loop.npz"}
    assert expected <= set(names) or kind == "ensemble", names
    for name in names:
        case = tmp_path / name.replace("/", "-")
        case.mkdir()
        bundle = _damaged_copy(run_dir, case, name, damage)
        with pytest.raises(UserError) as error:
            checkpoint.resolve(str(bundle.parent.parent))
        message = str(error.value)
        assert f"{bundle} is corrupt: {name}" in message, message
        assert "older complete checkpoint is" in message and "--resume" in message, message  # (one at 200 steps)


def test_resume_and_evaluate_name_the_damaged_file_in_one_line(trained_run, tmp_path):  # noqa: F811
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    os.remove(copy / ".owner.lock")
    replay = pathlib.Path(checkpoint.list_complete(str(copy))[-1]) / "replay.npz"
    replay.write_bytes(replay.read_bytes()[:1000])  # a copy cut short
    for args in (["train", "--resume", str(copy), "--quiet"], ["evaluate", str(copy), "--episodes", "1"]):
        assert_one_line_error(gluon_pdqn(*args), "is corrupt: replay.npz has 1,000 bytes")


def test_a_bundle_from_before_checksums_loads_and_one_without_them_is_refused(trained_run, tmp_path):  # noqa: F811
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    os.remove(copy / ".owner.lock")
    marker = pathlib.Path(checkpoint.list_complete(str(copy))[-1]) / checkpoint.MARKER
    marker.write_text("ok\n")  # what bundles said before they carried checksums
    result = gluon_pdqn("evaluate", str(copy), "--episodes", "1")
    assert result.returncode == 0 and "not verified" in result.stderr, result.stderr
    marker.write_text(json.dumps({"format": checkpoint.FORMAT}))
    assert_one_line_error(gluon_pdqn("evaluate", str(copy), "--episodes", "1"), "marker holds no checksums")
