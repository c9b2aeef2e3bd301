import pytest

from gluon_pdqn.config import Config, load_preset, preset_names, valid_keys
from gluon_pdqn.errors import UserError


def test_every_shipped_preset_loads():
    assert {"cartpole", "atari-nature", "atari-modern"} <= set(preset_names())
    for name in preset_names():
        cfg = load_preset(name)
        assert cfg.preset == name


def test_atari_presets_follow_the_protocols():
    nature, modern = load_preset("atari-nature"), load_preset("atari-modern")
    assert (nature.optim.name, nature.optim.learning_rate, nature.replay.capacity) == ("rmsprop", 2.5e-4, 1_000_000)
    assert (nature.replay.learning_starts, nature.agent.target_update_every) == (50_000, 10_000)
    assert (nature.exploration.epsilon_final, nature.exploration.decay_steps) == (0.1, 1_000_000)
    assert nature.exploration.eval_epsilon == 0.05
    assert (modern.optim.name, modern.optim.learning_rate, modern.optim.adam_epsilon) == ("adam", 6.25e-5, 1.5e-4)
    assert (modern.replay.learning_starts, modern.agent.target_update_every) == (20_000, 8_000)
    assert (modern.exploration.epsilon_final, modern.exploration.decay_steps) == (0.01, 250_000)
    assert modern.exploration.eval_epsilon == 0.001


def test_overrides_are_coerced_to_the_field_type():
    cfg = Config().replace({"replay.capacity": "1_000", "network.hidden": "32,16", "agent.double_q": "false",
                            "optim.learning_rate": "3e-4", "run.stop_return": "none"})
    assert cfg.replay.capacity == 1000 and cfg.network.hidden == (32, 16)
    assert cfg.agent.double_q is False and cfg.optim.learning_rate == 3e-4 and cfg.run.stop_return is None


def test_unknown_key_names_the_valid_ones():
    with pytest.raises(UserError) as e:
        Config().replace({"replay.capacityy": 5})
    assert "replay.capacity" in str(e.value) and "unknown setting 'replay.capacityy'" in str(e.value)
    assert "replay.capacity" in valid_keys()


@pytest.mark.parametrize("key,value", [("replay.batch_size", "many"), ("agent.double_q", "maybe"),
                                       ("replay.capacity", "1.5")])
def test_malformed_values_are_errors(key, value):
    with pytest.raises(UserError, match=key):
        Config().replace({key: value})


@pytest.mark.parametrize("key,value", [("replay.batch_size", 0), ("agent.gamma", 1.5), ("optim.name", "adagrad"),
                                       ("exploration.epsilon_final", -0.1)])
def test_invalid_values_are_refused(key, value):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        Config().replace({key: value})


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(UserError, match="cartpole"):
        load_preset("no-such-preset")


def test_config_round_trips_through_json():
    import json

    from gluon_pdqn.config import from_dict

    cfg = load_preset("atari-modern").replace({"run.seed": 7})
    assert from_dict(json.loads(cfg.to_json())) == cfg
