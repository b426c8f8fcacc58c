"""Experiment A's script (experiments/representation_probe.py): a tiny run's tables, its splits and its refusals."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "representation_probe.py"


def load_script():
    """Import the script by path (experiments/ is not an installed package)."""
    name = "representation_probe_script"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


rp = load_script()
FAST_SETTINGS = ("random", "acro", "repdib-simsr")


def check_tables(out: Path, settings: tuple[str, ...], seeds: int) -> dict:
    """Assert the structure and finiteness of table.csv, table.md, seeds.csv and results.json; return results.json."""
    expected = list(rp.REFERENCES) + list(settings)
    with open(out / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == rp.CSV_COLUMNS
    assert [r["setting"] for r in rows] == expected
    for r in rows:
        assert int(r["seeds"]) == (1 if r["setting"] in rp.REFERENCES else seeds)
        for target in ("endo", "exo"):
            for metric in ("iqm", "mean"):
                point, low, high = (float(r[f"{target}_r2_{metric}{s}"]) for s in ("", "_low", "_high"))
                assert all(math.isfinite(v) for v in (point, low, high)), r
                assert low <= point + 1e-9 and point <= high + 1e-9, r
                assert point <= 1.0 + 1e-6, r  # R^2 can be negative on held-out data, never above 1
        trained = r["setting"] not in rp.REFERENCES and rp.SETTINGS[r["setting"]][0] != "none"
        assert math.isfinite(float(r["train_loss_final"])) == trained, r
        if r["setting"] not in rp.REFERENCES:
            assert float(r["compile_s"]) > 0 and float(r["train_s"]) > 0
    oracle = rows[0]
    assert float(oracle["endo_r2_mean"]) == pytest.approx(1.0, abs=1e-3)  # the endo vector predicts itself

    tables = (out / "table.md").read_text().split("\n\n")
    summary = [line for line in tables[1].splitlines() if not line.startswith(("| setting", "|---"))]
    assert [line.split("|")[1].strip() for line in summary] == expected
    assert all(line.count("|") == 8 for line in summary)
    per_dim = [line for line in tables[3].splitlines() if not line.startswith(("| setting", "|---"))]
    assert [line.split("|")[1].strip() for line in per_dim] == expected

    with open(out / "seeds.csv") as f:
        seed_rows = list(csv.DictReader(f))
    assert len(seed_rows) == len(rp.REFERENCES) + seeds * len(settings)
    for s in seed_rows:
        assert math.isfinite(float(s["endo_r2"])) and math.isfinite(float(s["exo_r2"]))

    results = json.loads((out / "results.json").read_text())
    for row in results["rows"]:
        assert len(row["endo_r2_per_dim_mean"]) == results["endo_dims"]
        assert len(row["exo_r2_per_dim_mean"]) == results["exo_dims"]
    return results


def test_tiny_run_writes_finite_tables_with_every_setting_and_reference(tmp_path):
    args = rp.Args(preset="tiny", seeds=2, out=tmp_path, settings=FAST_SETTINGS)
    results = rp.run(args, log=lambda *_: None)
    check_tables(tmp_path, FAST_SETTINGS, seeds=2)
    # the twin's exo vector is its cartpole's 5 endo values plus its action
    assert results["endo_dims"] == 5 and results["exo_dims"] == 6
    # the encoders trained on the saved, sha256-verified dataset that the run wrote
    assert (tmp_path / "data" / "train.npz").exists() and (tmp_path / "data" / "train.json").exists()


@pytest.mark.slow
def test_tiny_run_of_all_settings(tmp_path):
    args = rp.Args(preset="tiny", seeds=2, out=tmp_path)
    rp.run(args, log=lambda *_: None)
    check_tables(tmp_path, tuple(rp.SETTINGS), seeds=2)


def test_probe_split_holds_out_whole_streams():
    train, test = rp.probe_split(num_rows=80, num_streams=8)
    # env-major rows: streams 0..5 (rows 0..59) train the probe, streams 6 and 7 test it
    np.testing.assert_array_equal(train, np.arange(60))
    np.testing.assert_array_equal(test, np.arange(60, 80))


def test_varying_dims_drops_columns_fixed_within_every_stream():
    rng = np.random.default_rng(0)
    values = np.stack([rng.normal(size=40), np.repeat(rng.normal(size=4), 10), np.zeros(40)], axis=1)
    # column 1 changes only between the 4 streams of 10 rows (like the shapes' colours), column 2 never
    np.testing.assert_array_equal(rp.varying_dims(values, num_streams=4), [0])


def test_ridge_scores_of_an_embedding_that_is_the_exo_vector():
    rng = np.random.default_rng(0)
    endo, exo = rng.normal(size=(200, 3)).astype(np.float32), rng.normal(size=(200, 2)).astype(np.float32)
    scores = rp.ridge_scores(exo, endo, exo, rp.probe_split(200, 4), l2=1e-6)
    assert scores["exo_r2"] == pytest.approx(1.0, abs=1e-4)
    assert scores["endo_r2"] < 0.1  # independent of the embedding: nothing to predict it from
    assert len(scores["endo_r2_per_dim"]) == 3 and len(scores["exo_r2_per_dim"]) == 2


def test_interval_of_identical_seeds_is_a_point():
    result = rp.interval([0.5, 0.5, 0.5, 0.5, 0.5])
    assert result["IQM"] == pytest.approx((0.5, 0.5, 0.5))
    assert result["Mean"] == pytest.approx((0.5, 0.5, 0.5))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"settings": ("simsr", "bisim")}, "unknown \\['bisim'\\]"),
        ({"seeds": 0}, "seeds=0"),
        ({"distractor": "clouds"}, "distractor='clouds'"),
        ({"difficulty": "extreme"}, "difficulty='extreme'"),
        ({"pretrain_steps": 0}, "pretrain_steps=0"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(tmp_path, overrides, message):
    args = rp.Args(preset="tiny", out=tmp_path, **overrides)
    with pytest.raises(ValueError, match=message):
        rp.run(args, log=lambda *_: None)
    assert not (tmp_path / "data").exists()


def test_bad_preset_is_refused():
    with pytest.raises(ValueError, match="preset='huge'; valid"):
        rp.resolve(rp.Args(preset="huge"))
