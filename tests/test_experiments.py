"""Experiment files (jaxrl_suite.experiments) and reports (jaxrl_suite.report).

Bad files fail with the file, the key and the valid choices before anything compiles; the grid
expands into one run per static config with seeds x sweep settings batched; a tiny experiment
runs end to end through the CLI and `report` rebuilds an identical table.md from results.csv.
"""

import csv
import textwrap
from pathlib import Path

import gymnax
import jax
import numpy as np
import pytest

import jaxrl_suite.envs  # noqa: F401  (jitted methods decorated at import, before the no-compile patch)
from jaxrl_suite import cli, experiments
from jaxrl_suite.experiments import ExperimentError, load_experiment

gymnax.make("CartPole-v1")

GOOD = """
# a tiny experiment used by the tests
name = "tiny"
seeds = 2
checkpoint = false

[[grid]]
agents = ["ppo"]
envs = ["cartpole-balance"]
obs = ["state"]
distractors = ["none"]

[agents.ppo]
config = { action_repeat = 8, num_envs = 4, num_steps = 16, update_epochs = 1, num_minibatches = 2, hidden_sizes = [16, 16], num_updates = 4, eval_every = 2, eval_episodes = 2 }
sweep = { learning_rate = [1e-3, 3e-3] }
"""


def _write(tmp_path, text, name="exp.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def no_compile(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("compiled before validating")

    monkeypatch.setattr(jax, "jit", fail)


def _assert_refused(tmp_path, good: str, edit: tuple[str, str], key: str, valid: str) -> None:
    """The good file with one edit is refused by load_experiment, naming the file, the key and the valid choices."""
    old, new = edit
    assert good.count(old) == 1
    path = _write(tmp_path, good.replace(old, new))
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    message = str(info.value)
    assert message.startswith(path)
    assert f"key {key}" in message
    assert valid in message


@pytest.mark.parametrize(
    "edit, key, valid",
    [
        (("seeds = 2", "seeds = 2\nsedes = 3"), "'sedes'", "valid: ['name'"),
        (("seeds = 2", 'seeds = "8"'), "'seeds'", "integer >= 1"),
        (('agents = ["ppo"]', 'agents = ["ppo"]\nenvz = ["x"]'), "'grid[0].envz'", "valid: ['agents', 'envs'"),
        (('agents = ["ppo"]', 'agents = ["ppoo"]'), "'grid[0].agents'", "'ppoo'; valid: [" ),
        (('envs = ["cartpole-balance"]', 'envs = ["cartpole-balanse"]'), "'grid[0].envs'", "valid: ["),
        (('distractors = ["none"]', 'distractors = ["nosie"]'), "'grid[0].distractors'", "'noise'"),
        (('obs = ["state"]', 'obs = ["rgb"]'), "'grid[0].obs'", "valid: ['state', 'pixels']"),
        (("num_updates = 4", "num_updates = 4.5"), "'agents.ppo.config.num_updates'", "must be of type int"),
        (("num_updates = 4", "num_updates = 4, num_update = 3"), "'agents.ppo.config.num_update'", "valid: ["),
        (("num_updates = 4", "num_updates = 4, env = 'x'"), "'agents.ppo.config.env'", "set by the grid"),
        (("sweep = {", "sweep = { num_env = [2, 4], "), "'agents.ppo.sweep.num_env'", "sweepable (batched): ['objective_weight', 'learning_rate'"),
        (("sweep = {", "sweep = { num_envs = [2.5], "), "'agents.ppo.sweep.num_envs'", "must be of type int"),
        (("sweep = {", "sweep = { env = ['x'], "), "'agents.ppo.sweep.env'", "set by the grid"),
        (('distractors = ["none"]', 'distractors = ["noise"]\ndifficulties = ["hardest"]'), "'grid[0].difficulties'",
         "valid: ['none', 'easy', 'medium', 'hard', 'train', 'test']"),
        (('distractors = ["none"]', 'distractors = ["noise"]\neval_difficulties = ["tset"]'), "'grid[0].eval_difficulties'",
         "'tset'; valid: ['none', 'easy', 'medium', 'hard', 'train', 'test']"),
        (('distractors = ["none"]', 'distractors = ["noise"]\neval_difficulties = ["test"]'), "'grid[0].eval_difficulties'",
         "needs checkpoint = true"),
        (('distractors = ["none"]', 'distractors = ["none"]\nimage_size = 4'), "'grid[0].image_size'", "integer >= 8"),
        (('obs = ["state"]', 'obs = "state"\nchecked = 1'), "'grid[0].checked'", "'eval_difficulties'"),
        (("[agents.ppo]", "[agents.ppo]\npreset = 'fast'"), "'agents.ppo.preset'", "valid: ['cartpole-cpu'"),
        (("[agents.ppo]", "[agents.sacc]\n[agents.ppo]"), "'agents.sacc'", "unknown agent; valid: ["),
        (('distractors = ["none"]', 'distractors = ["shapes"]'), "'grid[0]'", "valid for 'state'"),
        (("num_updates = 4", "num_updates = 5"), "'grid[0]'", "multiple of eval_every"),
    ],
)
def test_bad_experiment_file_names_file_key_and_choices_before_compiling(tmp_path, no_compile, edit, key, valid):
    _assert_refused(tmp_path, GOOD, edit, key, valid)


OFFLINE_GOOD = """
# a tiny offline experiment used by the tests: a dataset table, one offline grid
name = "tiny-offline"
seeds = 2

[datasets.d]
env = "cartpole-balance"
obs = "state"
distractor = "noise"
difficulty = "hard"
level = "random"
action_repeat = 8
size = 400

[[grid]]
agents = ["iql", "bc"]
datasets = ["d"]
representations = ["raw"]

[agents.iql]
preset = "tiny"
config = { num_updates = 6 }
"""


@pytest.mark.parametrize(
    "edit, key, valid",
    [
        (("size = 400", "size = 400\nsise = 3"), "'datasets.d.sise'", "unknown key; valid: ['env', 'obs', 'distractor'"),
        (("size = 400", 'size = "big"'), "'datasets.d.size'", "must be of type int"),
        (('level = "random"', 'level = "mediocre"'), "'datasets.d'", "level='mediocre'; valid: ['random', 'medium', 'expert'"),
        (('distractor = "noise"', 'distractor = "shapes"'), "'datasets.d'", "distractor='shapes' with obs='state'; valid:"),
        (("[datasets.d]", '[datasets."../d"]'), "'datasets.../d'", "a dataset name is a file name"),
        (('datasets = ["d"]', 'datasets = ["e"]'), "'grid[0].datasets'", "'e'; valid: ['d']"),
        (('representations = ["raw"]', 'representations = ["bisim"]'), "'grid[0].representations'",
         "'bisim'; valid: ['raw', 'bpr', 'acro', 'simsr', 'simsr-fixed', 'mico', 'mico-fixed']"),
        (('representations = ["raw"]', 'representations = ["raw", "bpr"]'), "'grid[0].representations'",
         "'bpr' is a two-stage pipeline for ['td3bc', 'iql'], not 'bc'"),
        (('agents = ["iql", "bc"]', 'agents = ["ppo"]'), "'grid[0].agents'", "'ppo' is not an offline agent and cannot train on datasets; valid: ['bc', 'cql', 'iql', 'td3bc']"),
        (('datasets = ["d"]', 'datasets = ["d"]\nenvs = ["cartpole-balance"]'), "'grid[0].envs'", "offline grid keys: ['agents', 'datasets', 'representations']"),
        (('preset = "tiny"', 'preset = "huge"'), "'agents.iql.preset'", "valid: ['cpu', 'gpu', 'tiny']"),
        (("num_updates = 6", "num_updates = 6, dataset = 'x.npz'"), "'agents.iql.config.dataset'", "set by the grid"),
        (("num_updates = 6", "num_updates = 6, representation = 'acro'"), "'agents.iql.config.representation'", "set by the grid"),
        (("num_updates = 6", "num_updates = 6, expectile = 1.5"), "'grid[0]'", "run iql_d_raw (iql on dataset d, representation raw): expectile=1.5"),
        (("num_updates = 6", "num_updates = 7"), "'grid[0]'", "multiple of eval_every"),
    ],
)
def test_bad_offline_experiment_file_names_file_key_and_choices_before_compiling(tmp_path, no_compile, edit, key, valid):
    _assert_refused(tmp_path, OFFLINE_GOOD, edit, key, valid)


@pytest.mark.parametrize(
    "edit, key, valid",
    [
        (('distractors = ["none"]', 'distractors = ["none"]\nrepresentations = ["bpr"]'), "'grid[0].representations'", "need datasets"),
        (('agents = ["ppo"]', 'agents = ["td3bc"]'), "'grid[0].agents'", "'td3bc' is an offline agent: give this grid `datasets`"),
    ],
)
def test_online_grid_refuses_offline_keys_and_agents(tmp_path, no_compile, edit, key, valid):
    _assert_refused(tmp_path, GOOD, edit, key, valid)


def test_offline_grid_expands_to_dataset_x_agent_x_representation_with_seeds_batched(tmp_path, no_compile):
    from jaxrl_suite import pretrain

    text = OFFLINE_GOOD.replace('agents = ["iql", "bc"]', 'agents = ["iql"]').replace(
        'representations = ["raw"]', 'representations = ["raw", "simsr-fixed"]'
    ) + "sweep = { expectile = [0.7, 0.9] }\n"
    experiment = load_experiment(_write(tmp_path, text), sets=["datasets.d.level=medium-replay"])
    assert [r.name for r in experiment.runs] == ["iql_d_raw", "iql_d_simsr-fixed"]
    assert set(experiment.datasets) == {"d"} and experiment.datasets["d"].level == "medium-replay"
    raw, fixed = experiment.runs
    assert (raw.dataset, raw.representation, fixed.representation) == ("d", "raw", "simsr-fixed")
    # env fields from the dataset table, budget from pretrain's tiny preset, then the file's config
    tiny = pretrain.PRESETS["tiny"]
    for run in experiment.runs:
        c = run.config
        assert (c.env, c.obs, c.distractor, c.difficulty, c.action_repeat) == ("cartpole-balance", "state", "noise", "hard", 8)
        assert c.dataset == "datasets/d.npz" and c.num_updates == 6 and c.hidden_sizes == tiny["hidden_sizes"]
        assert run.overrides == ({"expectile": 0.7}, {"expectile": 0.9})
    assert raw.config.representation == "none" and raw.config.bisim_expectile == 0.0
    assert (fixed.config.representation, fixed.config.bisim_expectile, fixed.config.bisim_reward_scaling) == ("simsr", 0.7, True)


def test_cli_run_with_bad_file_exits_2_with_the_message(tmp_path, no_compile, capsys):
    path = _write(tmp_path, GOOD.replace("seeds = 2", "seeds = 0"))
    assert cli.main(["run", path, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert path in err and "'seeds'" in err
    assert not (tmp_path / "out").exists()


def test_grid_expands_to_one_run_per_static_config_with_sweeps_batched(tmp_path, no_compile):
    text = GOOD.replace('distractors = ["none"]', 'distractors = ["none", "noise", "twin"]\ndifficulties = ["easy", "hard"]')
    experiment = load_experiment(_write(tmp_path, text))
    names = [r.name for r in experiment.runs]
    # "none" has no difficulty: one run; each distractor type one run with difficulty as a batch axis
    assert names == [
        "ppo_cartpole-balance_state_none-none", "ppo_cartpole-balance_state_noise-easy-hard", "ppo_cartpole-balance_state_twin-easy-hard",
    ]
    assert experiment.runs[0].overrides == ({"learning_rate": 1e-3}, {"learning_rate": 3e-3})
    run = experiment.runs[1]
    assert run.overrides == (
        {"difficulty": "easy", "learning_rate": 1e-3}, {"difficulty": "easy", "learning_rate": 3e-3},
        {"difficulty": "hard", "learning_rate": 1e-3}, {"difficulty": "hard", "learning_rate": 3e-3},
    )
    assert run.difficulties == ("easy", "hard")
    assert (run.config.distractor, run.config.num_updates, run.config.hidden_sizes) == ("noise", 4, (16, 16))
    # one difficulty stays static config: the old one-run-per-preset layout
    (single,) = load_experiment(_write(tmp_path, GOOD.replace('distractors = ["none"]', 'distractors = ["noise"]'), "one.toml")).runs
    assert (single.name, single.config.difficulty, single.overrides) == (
        "ppo_cartpole-balance_state_noise-hard", "hard", ({"learning_rate": 1e-3}, {"learning_rate": 3e-3}))


def test_preset_then_config_then_set_and_seeds_override_in_that_order(tmp_path, no_compile):
    text = GOOD.replace("[agents.ppo]", "[agents.ppo]\npreset = 'cartpole-cpu'")
    experiment = load_experiment(
        _write(tmp_path, text), seeds=3,
        sets=["agents.ppo.config.num_updates=6", 'grid.0.distractors=["twin"]', "agents.ppo.sweep.gamma=[0.9, 0.99]"],
    )
    (run,) = experiment.runs
    assert experiment.seeds == 3
    assert run.config.num_updates == 6  # --set beats the file's config
    assert run.config.num_minibatches == 2  # the file's config beats the preset
    assert run.config.normalize_reward is True  # the preset fills what the file leaves out
    assert run.config.distractor == "twin"
    assert len(run.overrides) == 4 and {"learning_rate": 3e-3, "gamma": 0.9} in run.overrides
    with pytest.raises(ExperimentError, match="key=value"):
        experiments.apply_sets({}, ["no-equals-sign"])


def test_tiny_experiment_runs_end_to_end_and_report_rebuilds_identical_table(tmp_path):
    path = _write(tmp_path, GOOD)
    out = tmp_path / "out"
    assert cli.main(["run", path, "--out", str(out), "--no-progress"]) == 0
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # 2 sweep settings x 2 seeds x 2 evaluation points
    assert len(rows) == 8
    for column in experiments.RESULT_COLUMNS + ("learning_rate",):
        assert column in rows[0], column
    assert {(r["setting"], r["seed"]) for r in rows} == {
        (f"learning_rate={lr}", s) for lr in ("0.001", "0.003") for s in ("0", "1")
    }
    assert sorted({int(r["env_steps"]) for r in rows}) == [2 * 64, 4 * 64]
    for r in rows:
        ret = float(r["return_mean"])
        assert 0.0 <= ret <= 1000.0
        assert float(r["normalized_score"]) == pytest.approx((ret - 279.3) / (1000.0 - 279.3), rel=1e-6)
    table = (out / "table.md").read_text()
    assert "ppo [learning_rate=0.001] · state · none/none | cartpole-balance | 2 |" in table
    assert "| IQM | median | mean | optimality gap |" in table
    for name in ("aggregate.png", "plots/learning_curves.png", "report.md", "experiment.json"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "aggregate.png" in report and "plots/learning_curves.png" in report and "results.csv" in report

    for name in ("table.md", "aggregate.png", "report.md"):
        (out / name).unlink()
    assert cli.main(["report", str(out)]) == 0
    assert (out / "table.md").read_text() == table
    assert (out / "aggregate.png").exists() and (out / "report.md").exists()


def test_report_of_a_directory_without_results_fails_clearly(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "results.csv does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_quickstart_shows_the_distractor_effect_with_separated_intervals(tmp_path):
    out = tmp_path / "quickstart"
    assert cli.main(["run", str(Path(__file__).resolve().parents[1] / "experiments" / "quickstart.toml"), "--out", str(out), "--no-progress"]) == 0
    from jaxrl_suite import report, stats

    final = report.final_scores(report.read_results(out / "results.csv"))
    iqm = {
        m: stats.stratified_bootstrap_ci(g["return_mean"].to_numpy(), stats.METRICS["IQM"], 1000)
        for m, g in final.groupby("distractor")
    }
    assert iqm["none"][0] > 950.0
    for distractor in ("noise", "twin"):
        assert iqm[distractor][2] < iqm["none"][1], (distractor, iqm)


# ---- difficulty as a batch axis, generalisation rows, the shipped experiment files -------------------

from jaxrl_suite import config as cfg_lib, ppo, training  # noqa: E402

DIFFICULTY_TINY = ppo.PPOConfig(
    env="cartpole-balance", distractor="noise", difficulty="hard", action_repeat=8, num_envs=2, num_steps=8, update_epochs=1,
    num_minibatches=2, hidden_sizes=(8,), num_updates=2, eval_every=1, eval_episodes=1, learning_rate=1e-3,
)
# a hard member batched with easy and medium vs the hard preset run alone, 1 seed each, agrees
# within this tolerance (not bitwise in general: batch width changes XLA's vectorisation; a
# 6-member PPO run of 4 updates x 4 envs x 16 steps differed from 2-member runs by up to 1e-2 in
# returns of ~500, relative 2e-5, and 8e-5 in losses of ~100)
DIFFICULTY_ATOL = 1e-3


def test_difficulty_batch_matches_separate_runs_per_member_in_one_compilation():
    difficulties = ("easy", "medium", "hard")
    static, batch = cfg_lib.make_batch(DIFFICULTY_TINY, 1, [{"difficulty": d} for d in difficulties])
    scales = np.asarray(batch.hyper[cfg_lib.DISTRACTOR_PARAMS].scale)
    np.testing.assert_allclose(scales, [0.3, 1.0, 2.0])  # each member carries its own preset's params
    together = training.batched(ppo.make_train(static))
    _, metrics = together.train(batch.keys, batch.hyper)
    assert together.train._cache_size() == 1  # three difficulties, one program

    alone_static, alone_batch = cfg_lib.make_batch(DIFFICULTY_TINY, 1)  # "hard" as static config, no override
    _, alone = training.batched(ppo.make_train(alone_static)).train(alone_batch.keys, alone_batch.hyper)
    for name in ("return_mean", "return_std", "loss", "value_loss"):
        np.testing.assert_allclose(np.asarray(metrics[name][2]), np.asarray(alone[name][0]), atol=DIFFICULTY_ATOL, rtol=0, err_msg=name)
    # the preset mattered: the easy member saw other observations, so its learning differs
    assert not np.allclose(np.asarray(metrics["value_loss"][0]), np.asarray(alone["value_loss"][0]))


def test_split_difficulty_draws_each_members_params_from_its_range_by_seed(no_compile):
    _, batch = cfg_lib.make_batch(DIFFICULTY_TINY, 3, [{"difficulty": "train"}, {"difficulty": "test"}])
    params = batch.hyper[cfg_lib.DISTRACTOR_PARAMS]
    scale, rho = np.asarray(params.scale), np.asarray(params.rho)
    assert np.all((scale[:3] >= 0.5) & (scale[:3] <= 1.0) & (rho[:3] >= 0.8) & (rho[:3] <= 0.9))  # NoiseDistractor.ranges
    assert np.all((scale[3:] >= 1.5) & (scale[3:] <= 2.5) & (rho[3:] >= 0.95) & (rho[3:] <= 0.99))
    assert len(set(scale[:3].tolist())) == 3  # one draw per seed
    _, again = cfg_lib.make_batch(DIFFICULTY_TINY, 3, [{"difficulty": "train"}, {"difficulty": "test"}])
    np.testing.assert_array_equal(np.asarray(again.hyper[cfg_lib.DISTRACTOR_PARAMS].scale), scale)  # a function of the seed
    with pytest.raises(ValueError, match=r"'hardest'.*valid: \['none', 'easy', 'medium', 'hard', 'train', 'test'\]"):
        cfg_lib.make_batch(DIFFICULTY_TINY, 1, [{"difficulty": "hardest"}])
    with pytest.raises(ValueError, match="need a distractor"):
        cfg_lib.make_batch(ppo.PPOConfig(distractor="none"), 1, [{"difficulty": "hard"}])


GENERALISATION = """
name = "tiny-generalisation"
seeds = 2

[[grid]]
agents = ["ppo"]
envs = ["cartpole-balance"]
distractors = ["noise"]
difficulties = ["train"]
eval_difficulties = ["train", "test", "hard"]

[agents.ppo]
config = { action_repeat = 8, num_envs = 2, num_steps = 8, update_epochs = 1, num_minibatches = 2, hidden_sizes = [8], num_updates = 2, eval_every = 1, eval_episodes = 2 }
"""


def test_generalisation_rows_evaluate_final_policies_under_other_params_and_report_them(tmp_path):
    out = tmp_path / "out"
    experiment = load_experiment(_write(tmp_path, GENERALISATION))
    (spec,) = experiment.runs
    assert (spec.name, spec.difficulties, spec.eval_difficulties) == ("ppo_cartpole-balance_state_noise-train", ("train",), ("train", "test", "hard"))
    experiments.run_experiment(experiment, out, progress=False)
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    training_rows = [r for r in rows if r["eval_on"] == ""]
    assert len(training_rows) == 2 * 2 and {r["difficulty"] for r in training_rows} == {"train"}
    by_target = {t: sorted((r for r in rows if r["eval_on"] == t), key=lambda r: r["seed"]) for t in ("train", "test", "hard")}
    last = sorted((r for r in training_rows if r["step"] == "2"), key=lambda r: r["seed"])
    for target, target_rows in by_target.items():
        assert [(r["seed"], r["step"], r["env_steps"]) for r in target_rows] == [("0", "2", "32"), ("1", "2", "32")], target
    # "train" is each member's own draw and the evaluation key is a function of the state: the last evaluation again
    for own, again in zip(last, by_target["train"]):
        assert float(again["return_mean"]) == pytest.approx(float(own["return_mean"]), abs=1e-3)
    assert any(abs(float(a["return_mean"]) - float(b["return_mean"])) > 1e-3 for a, b in zip(by_target["train"], by_target["test"]))
    report = (out / "report.md").read_text()
    assert "## Generalisation" in report and "| own (last training eval) | on train | on test | on hard |" in report
    assert "| ppo · state · noise/train | cartpole-balance | 2 |" in report
    table = (out / "table.md").read_text()
    assert table.count("| ppo · state · noise/train | cartpole-balance | 2 |") == 1  # eval rows stay out of the main table


def test_report_keeps_probe_columns_and_draws_them_and_copes_without(tmp_path):
    from jaxrl_suite import report, runs

    rows = []
    for distractor, r2 in (("none", 0.9), ("noise", 0.4)):
        for seed in range(3):
            for step in (1, 2):
                row = {
                    "experiment": "p", "run": distractor, "agent": "ppo", "env": "cartpole-balance", "obs": "state",
                    "distractor": distractor, "difficulty": "hard", "setting": "", "seed": seed, "step": step,
                    "env_steps": 10 * step, "return_mean": 500.0 + seed, "return_std": 1.0, "normalized_score": 0.3,
                    "diverged": 0, "eval_on": "",
                }
                if distractor == "noise":  # a run without a probe leaves the cells empty
                    row.update(probe_endo_r2=r2 + 0.01 * seed, probe_exo_r2=0.1)
                rows.append(row)
    runs.write_csv(tmp_path / "results.csv", rows)
    report.build_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "## Probe R^2" in text and "| method | probe_endo_r2 | probe_exo_r2 |" in text
    assert "| ppo · state · noise/hard | 0.410 [0.400, 0.420] | 0.100 [0.100, 0.100] |" in text
    assert "| ppo · state · none/hard | n/a | n/a |" in text
    assert (tmp_path / "plots" / "probe.png").stat().st_size > 0
    assert "Generalisation" not in text

    for row in rows:  # no probe columns, no eval_on column (an older results.csv): no probe section
        row.pop("probe_endo_r2", None), row.pop("probe_exo_r2", None), row.pop("eval_on")
    runs.write_csv(tmp_path / "results.csv", rows)
    (tmp_path / "plots" / "probe.png").unlink()
    report.build_report(tmp_path)
    assert "Probe" not in (tmp_path / "report.md").read_text() and not (tmp_path / "plots" / "probe.png").exists()


EXPERIMENT_FILES = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.toml"))


@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda p: p.stem)
def test_every_shipped_experiment_file_opens_with_its_purpose_and_expands(path, no_compile):
    text = path.read_text()
    assert text.startswith("#"), "an experiment file opens with a comment saying what it measures"
    header = "\n".join(line for line in text.splitlines() if line.startswith("#")).lower()
    assert "cpu" in header and "gpu" in header, "the opening comment gives the expected runtime on CPU and on a GPU"
    experiment = load_experiment(path)
    assert experiment.runs and experiment.name == path.stem
    # no two runs share a name (a directory) and every sweep member passes its config's checks
    assert len({r.name for r in experiment.runs}) == len(experiment.runs)
