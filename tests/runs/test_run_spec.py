"""A run's description: the seed and sweep rules, once; one JSON document that reads back to
the same spec and options; partial documents take the defaults, unknown fields are named."""

import dataclasses
import json

import pytest

from purejaxppo import ConfigError, Hyperparams, PPOConfig
from purejaxppo.ppo.tuning import Tuning
from purejaxppo.runs.document import (
    DOCUMENT_EXTRA_KEYS,
    DOCUMENT_FIELDS,
    read_run_document,
    run_document,
)
from purejaxppo.runs.spec import MAX_SEED, LoopOptions, RunSpec
from purejaxppo.runs.strategy import Independent

CONFIG = PPOConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3)


def test_num_runs_is_arithmetic_even_for_huge_populations():
    spec = RunSpec("x", CONFIG, num_seeds=10**8, sweep={"gamma": [0.9, 0.99, 0.999]})
    assert spec.num_runs == 3 * 10**8
    assert spec.sweep == {"gamma": (0.9, 0.99, 0.999)}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_seeds": 0}, "num_seeds must be a positive integer, got 0"),
        ({"num_seeds": 2.0}, "num_seeds must be a positive integer, got 2.0"),
        ({"seed": -1}, f"seeds -1..-1 must lie in 0..{MAX_SEED}"),
        ({"seed": MAX_SEED, "num_seeds": 2}, f"must lie in 0..{MAX_SEED}"),
        ({"seed": "3"}, "seed must be an integer"),
        ({"sweep": {"num_envs": [4, 8]}}, "cannot sweep 'num_envs': it is static"),
        ({"sweep": {"gamma": []}}, "sweep gamma has no values"),
        ({"sweep": {"gamma": [0.9, 0.9]}}, "sweep gamma repeats a value"),
        ({"sweep": {"gamma": [0.9, 1.5]}}, "gamma = 1.5 is out of range"),
        ({"hyperparams": Hyperparams(clip_eps=-1.0)}, "clip_eps = -1 is out of range"),
    ],
)
def test_bad_specs_are_refused_by_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        RunSpec("x", CONFIG, **changes)


def test_the_document_reads_back_to_the_same_spec_and_options():
    spec = RunSpec("x", CONFIG, Hyperparams(gamma=0.9), 5, 3, {"learning_rate": [1e-3, 3e-4]})
    loop = LoopOptions(chunk_updates=2, checkpoint_every=3, eval_every=1, tensorboard=True)
    document = run_document(spec, loop, Tuning.plain(), argv=["train"])
    document = json.loads(json.dumps(document))  # as written and read from config.json
    assert document["tuning"] == Tuning.plain().to_dict() and document["argv"] == ["train"]
    again, loop_again = read_run_document(document, "here")
    assert again == spec
    # The machine's options (progress bar, devices) are not the run's: they are not kept.
    assert loop_again == loop.replace(progress=True, devices=None)


def test_a_partial_document_takes_the_defaults():
    spec, loop = read_run_document({"config": {"env": "Acrobot-v1", "num_envs": 8}}, "c.json")
    assert spec.config == PPOConfig(env="Acrobot-v1", num_envs=8)
    assert spec.hyperparams == Hyperparams() and spec.seed == 0 and spec.num_seeds == 1
    assert spec.name == "Acrobot-v1" and spec.sweep == {} and loop == LoopOptions()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"config": {"hiden_sizes": [4]}}, "c.json: unknown config field.s. hiden_sizes"),
        ({"config": {"hidden_sizes": 64}}, "c.json: config: hidden_sizes must be a list"),
        ({"config": {"num_envs": 0}}, "c.json: num_envs must be a positive integer"),
        ({"hyperparams": {"gama": 0.9}}, "c.json: hyperparams: unknown hyperparameter 'gama'"),
        ({"hyperparams": {"gamma": "0.9"}}, "c.json: hyperparams: gamma must be a number"),
        ({"sweep": {"gamma": 0.9}}, "c.json: sweep must map names to lists of numbers"),
        ({"loop": {"chunk": 2}}, "c.json: loop must be an object of chunk_updates"),
        ({"loop": {"eval_every": -1}}, "c.json: eval_every must be an integer >= 0"),
        ([1, 2], "c.json: a run document is a JSON object"),
    ],
)
def test_bad_documents_name_the_field(document, message):
    with pytest.raises(ConfigError, match=message):
        read_run_document(document, "c.json")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"chunk_updates": 0}, "chunk_updates must be an integer >= 1, got 0"),
        ({"checkpoint_every": -1}, "checkpoint_every must be an integer >= 0"),
        ({"eval_episodes": 0}, "eval_episodes must be an integer >= 1"),
        ({"devices": 0}, "devices must be an integer >= 1"),
        ({"eval_every": 1.5}, "eval_every must be an integer >= 0, got 1.5"),
    ],
)
def test_bad_loop_options_name_the_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        LoopOptions(**changes)


def test_unknown_keys_anywhere_in_the_document_are_named_at_once():
    document = {
        "hyperparameters": {"learning_rate": 0.1},
        "num_seed": 8,
        "config": {"hiden_sizes": [4], "num_env": 8},
        "hyperparams": {"gama": 0.9, "lr": 0.1},
        "loop": {"chunk": 2},
        "pbt": {"often": 1},
        "sweep": {"lr": [1e-3]},
        "search": {"gamma": {"kind": "log", "low": 0.9, "high": 0.99, "step": 1}},
        "schedule": [[2, {"entropy": 0.1}]],
    }
    with pytest.raises(ConfigError) as error:
        read_run_document(document, "c.json")
    message = str(error.value)
    for expected in (
        "c.json: unknown key(s) 'hyperparameters', 'num_seed' (known: name, env, config,",
        "unknown config field(s) hiden_sizes, num_env",
        "hyperparams: unknown hyperparameters 'gama', 'lr'",
        "loop must be an object of chunk_updates, ",
        ": unknown 'chunk'",
        "unknown pbt field(s) often",
        "sweep: unknown hyperparameter(s) 'lr'",
        "search gamma: unknown key(s) 'step' (known: kind, low, high)",
        "change at update 2: unknown hyperparameter(s) 'entropy'",
    ):
        assert expected in message
    assert "\n" not in message


def test_the_keys_run_writers_add_are_accepted_and_no_others():
    """config.json and checkpoint metadata carry `run_document`'s `extra` keys beside the
    run's fields (a strategy's object too, when the run has one): each writer's keys read
    back; a key no writer writes is refused."""
    from purejaxppo.runs.pbt_settings import PBTConfig
    from purejaxppo.runs.search import SearchRange

    spec = RunSpec(
        "x", CONFIG, num_seeds=4, search={"learning_rate": SearchRange("log", 1e-4, 1e-3)},
        strategy=PBTConfig(every=1), changes=((1, {"gamma": 0.9}),),
    )  # fmt: skip
    written = run_document(
        spec,
        LoopOptions(),
        Tuning.plain(),
        argv=["train"],
        updates_done=2,
        evaluations={"2": [1.0, 2.0]},
        format=4,
        exported_run={"run": 0},
    )
    assert set(written) == set(DOCUMENT_FIELDS) | set(DOCUMENT_EXTRA_KEYS)
    assert read_run_document(json.loads(json.dumps(written)), "here")[0] == spec
    alone = run_document(
        dataclasses.replace(spec, search={}, strategy=Independent()), LoopOptions()
    )
    assert "pbt" not in alone  # independent runs write no strategy object
    older = {k: v for k, v in written.items() if k != "changes"} | {
        "schedule": [[1, {"gamma": 0.9}]]
    }
    assert read_run_document(older, "older")[0] == spec  # an earlier version's key
    with pytest.raises(ConfigError, match=r"^here: unknown key\(s\) 'argvs' \(known: "):
        read_run_document(written | {"argvs": []}, "here")
