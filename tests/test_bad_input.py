"""Every class of bad input gives a clear error before anything is compiled or written (docs/errors.md).

Each test is one row of the table in docs/errors.md: it feeds the bad input through the command
line (or the Python API where that is the entry point), asserts the error type and its key
words, and asserts that nothing was left behind: no run directory, no partial file, and a run
directory that existed before is byte-for-byte unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from jaxrl_suite import cli, datasets, ppo
from jaxrl_suite.experiments import ExperimentError, load_experiment

# the CLI spelling of test_runs.TINY (2 members, 2 evaluations per chunk), so its program is shared
PPO_TINY_ARGS = [
    "--agent", "ppo", "--env", "cartpole-balance", "--seeds", "2", "--no-progress", "--action-repeat", "8", "--num-envs", "4",
    "--num-steps", "16", "--update-epochs", "1", "--num-minibatches", "2", "--hidden-sizes", "16", "16", "--num-updates", "2",
    "--eval-every", "1", "--evals-per-chunk", "2", "--eval-episodes", "2", "--learning-rate", "1e-3", "--normalize-obs",
    "--normalize-reward",
]
# tests/offline/conftest.py's state dataset spec, so its generation program is shared
DATASET_SPEC = dict(obs="state", distractor="noise", difficulty="hard", level="random", image_size=16, action_repeat=8,
                    size=400, num_envs=4, chunk_steps=50)
OFFLINE_ARGS = ["--agent", "bc", "--no-progress", "--num-updates", "2", "--eval-every", "1", "--eval-episodes", "2",
                "--batch-size", "8", "--hidden-sizes", "16", "16", "--action-repeat", "8", "--distractor", "noise",
                "--difficulty", "hard", "--image-size", "16"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes, to show a failed command changed nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fails_cleanly(argv: list[str], capsys, words: list[str], folder: Path) -> str:
    """Run the CLI; it must exit 2, print every key word, and leave `folder` exactly as it was."""
    before = snapshot(folder)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err, (word, err)
    assert snapshot(folder) == before
    return err.strip()


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Every test runs in its own empty folder, so a stray write shows up in its snapshot."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A good 400-transition state dataset (noise distractor, hard) and its sidecar."""
    return datasets.save(datasets.generate(datasets.DatasetSpec(**DATASET_SPEC)), tmp_path_factory.mktemp("data") / "good")


# ---------------------------------------------------------------------------------------- unknown names


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--env", "cartpole-upside"], ["unknown env 'cartpole-upside'", "valid:", "cartpole-balance-v1"]),
        (["--distractor", "fog"], ["unknown distractor 'fog'", "valid:", "twin"]),
        (["--agent", "a2c"], ["unknown agent 'a2c'", "valid:", "ppo"]),
        (["--preset", "nope"], ["unknown preset 'nope' for agent 'ppo'", "valid:", "cartpole-cpu"]),
        (["--obs", "rgb"], ["obs='rgb' is not an observation mode", "valid:", "pixels"]),
    ],
    ids=["env", "distractor", "agent", "preset", "obs"],
)
def test_unknown_name_lists_the_valid_ones(flags, words, capsys, in_tmp):
    # the later flag wins in argparse and tyro, so the bad name overrides PPO_TINY_ARGS's
    fails_cleanly(["train", *PPO_TINY_ARGS, *flags, "--out", "run"], capsys, words, in_tmp)


def test_unknown_objective_lists_the_valid_ones(capsys, in_tmp):
    fails_cleanly(["train", "--agent", "sac", "--objective", "nope", "--out", "run"], capsys,
                  ["objective='nope' is not an objective", "valid:", "simsr"], in_tmp)


def test_unknown_representation_of_an_offline_agent(capsys, in_tmp, dataset):
    fails_cleanly(["train", *OFFLINE_ARGS, "--dataset", str(dataset), "--representation", "pixels2vec", "--out", "run"], capsys,
                  ["representation='pixels2vec'", "valid:", "acro"], in_tmp)


# ------------------------------------------------------------------------------------- wrong types, ranges


def test_wrong_type_on_the_command_line_exits_2_naming_the_flag(capsys, in_tmp):
    before = snapshot(in_tmp)
    with pytest.raises(SystemExit) as exit_info:  # tyro's own parser error, raised while parsing
        cli.main(["train", *PPO_TINY_ARGS, "--num-envs", "four", "--out", "run"])
    assert exit_info.value.code == 2
    out = capsys.readouterr()
    assert "--num-envs" in out.err + out.out and "four" in out.err + out.out
    assert snapshot(in_tmp) == before


def test_wrong_type_in_the_python_api_is_a_value_error():
    with pytest.raises(ValueError, match=r"PPOConfig.num_envs='4' must be a positive integer"):
        ppo.make_train(ppo.PPOConfig(num_envs="4"))
    with pytest.raises(ValueError, match=r"hidden_sizes=\[16, 16\] must be a non-empty tuple of positive integers"):
        ppo.make_train(ppo.PPOConfig(hidden_sizes=[16, 16]))


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--num-envs", "-4"], ["PPOConfig.num_envs=-4 must be a positive integer"]),
        (["--hidden-sizes", "16", "-16"], ["hidden_sizes=(16, -16) must be a non-empty tuple of positive integers"]),
        (["--gamma", "1.5"], ["gamma=1.5 must be in [0, 1]"]),
        (["--sweep", "gamma=0.9,1.5"], ["gamma=1.5 must be in [0, 1]"]),
        (["--learning-rate", "-1e-3"], ["learning_rate=-0.001 must be > 0"]),
        (["--difficulty", "insane"], ["difficulty='insane'", "valid:", "hard"]),
        (["--num-updates", "3", "--evals-per-chunk", "2"], ["num_updates=3 must be a multiple of eval_every * evals_per_chunk"]),
        (["--seeds", "0"], ["--seeds 0 must be a positive integer"]),
    ],
    ids=["negative-size", "negative-hidden", "gamma-above-1", "swept-gamma-above-1", "negative-lr", "unknown-difficulty",
         "uneven-chunks", "zero-seeds"],
)
def test_out_of_range_value_is_refused_before_anything_is_written(flags, words, capsys, in_tmp):
    fails_cleanly(["train", *PPO_TINY_ARGS, *flags, "--out", "run"], capsys, words, in_tmp)


# ------------------------------------------------------------------------------------------ experiment TOML


@pytest.mark.parametrize(
    "text, words",
    [
        ('name = "t"\nseeds = 1\n[[grid]]\nagents = ["ppo"]\nenvs = ["cartpole-balance"]\n[agents.ppo.config]\nnum_envs = "four"\n',
         ["key 'agents.ppo.config.num_envs'", "must be of type int", "got str 'four'"]),
        ('name = "t"\nseeds = 1\n[[grid]]\nagents = ["ppo"]\nenvs = ["cartpole-balance"]\ndistractors = ["fog"]\n',
         ["key 'grid[0].distractors'", "unknown value 'fog'", "valid:"]),
        ('name = "t"\nseeds = -1\n[[grid]]\nagents = ["ppo"]\nenvs = ["cartpole-balance"]\n', ["key 'seeds'", "must be an integer >= 1"]),
        ('name = "t"\nseeds = [1\n', ["not valid TOML"]),
    ],
    ids=["wrong-type", "unknown-distractor", "negative-seeds", "corrupt"],
)
def test_bad_experiment_file_is_refused_naming_the_key(text, words, capsys, in_tmp):
    Path("bad.toml").write_text(text)
    with pytest.raises(ExperimentError):
        load_experiment("bad.toml")
    fails_cleanly(["run", "bad.toml", "--out", "results"], capsys, ["bad.toml", *words], in_tmp)


# --------------------------------------------------------------------------------------------- datasets


def test_empty_dataset_file_is_refused(capsys, in_tmp, dataset):
    Path("empty.npz").write_bytes(b"")
    fails_cleanly(["train", *OFFLINE_ARGS, "--dataset", "empty.npz", "--out", "run"], capsys, ["no sidecar empty.json"], in_tmp)
    shutil.copy(datasets.paths(dataset)[1], "empty.json")  # a good sidecar beside an empty npz
    fails_cleanly(["train", *OFFLINE_ARGS, "--dataset", "empty.npz", "--out", "run"], capsys,
                  ["empty.npz: sha256", "does not match the sidecar", "truncated"], in_tmp)


def test_corrupt_dataset_file_is_refused(capsys, in_tmp, dataset):
    npz, sidecar = datasets.paths(dataset)
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path("flipped.npz").write_bytes(bytes(data))
    shutil.copy(sidecar, "flipped.json")
    fails_cleanly(["train", *OFFLINE_ARGS, "--dataset", "flipped.npz", "--out", "run"], capsys, ["sha256", "altered"], in_tmp)
    shutil.copy(npz, "badmeta.npz")
    Path("badmeta.json").write_text(sidecar.read_text()[:50])
    fails_cleanly(["train", *OFFLINE_ARGS, "--dataset", "badmeta.npz", "--out", "run"], capsys,
                  ["sidecar badmeta.json is not valid JSON"], in_tmp)


def test_dataset_whose_observations_do_not_fit_the_env_is_refused(capsys, in_tmp, dataset):
    # the dataset observes cartpole + the noise distractor's features; the config asks for no distractor,
    # which the sidecar's env fields refuse before the arrays are read
    fails_cleanly(["train", *OFFLINE_ARGS, "--dataset", str(dataset), "--distractor", "none", "--out", "run"], capsys,
                  ["config does not match dataset", "distractor='none' (dataset: 'noise')"], in_tmp)
    # a sidecar edited to claim the config's env still meets the observation-shape check on load
    npz, sidecar = datasets.paths(dataset)
    shutil.copy(npz, "relabelled.npz")
    Path("relabelled.json").write_text(json.dumps({**json.loads(sidecar.read_text()), "distractor": "none"}))
    fails_cleanly(["train", *OFFLINE_ARGS, "--dataset", "relabelled.npz", "--distractor", "none", "--out", "run"], capsys,
                  ["dataset", "relabelled.npz", "observations have shape", "observes (5,)"], in_tmp)


# ------------------------------------------------------------------------------------ run directories


def test_resume_with_another_config_leaves_the_run_untouched(capsys, in_tmp):
    assert cli.main(["train", *PPO_TINY_ARGS, "--out", "run"]) == 0
    capsys.readouterr()
    assert (in_tmp / "run" / "checkpoints" / "2").is_dir()
    fails_cleanly(["train", *PPO_TINY_ARGS, "--learning-rate", "5e-3", "--out", "run", "--resume"], capsys,
                  ["holds a run of a different config"], in_tmp)
    # and without --resume the same command refuses to write into a directory that holds a run
    fails_cleanly(["train", *PPO_TINY_ARGS, "--out", "run"], capsys, ["already holds a run", "--resume"], in_tmp)


def test_output_path_under_a_file_is_refused_before_training(capsys, in_tmp):
    Path("a_file").write_text("not a directory")
    fails_cleanly(["train", *PPO_TINY_ARGS, "--out", "a_file/run"], capsys,
                  ["cannot write the output directory a_file/run", "Not a directory"], in_tmp)


def test_read_only_output_directory_is_refused_before_training(capsys, in_tmp):
    locked = in_tmp / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):
        pytest.skip("running as root: permission bits do not stop writes (the under-a-file test covers this row)")
    fails_cleanly(["train", *PPO_TINY_ARGS, "--out", "locked/run"], capsys, ["cannot write the output directory", "Permission denied"], in_tmp)
