"""An experiment's report, rebuilt from its results.csv alone: table, aggregate plot, curves, report.md.

    OUT/table.md                 final scores per method and task (IQM with stratified bootstrap 95%
                                 interval, and mean), then aggregates over tasks of normalised scores
    OUT/aggregate.png            IQM, median, mean and optimality gap of normalised scores, with intervals
    OUT/plots/learning_curves.png  evaluation return against env steps, one panel per task
    OUT/plots/probe.png          final probe R^2 per method (only when results.csv has probe columns)
    OUT/report.md                what was run, the table, a generalisation table (when results.csv has
                                 `eval_on` rows), a probe table, and links to everything above

Offline rows (a non-empty `dataset` column, from an experiment's offline grids) also get their
own table in table.md: per dataset, agent and representation, the normalised score on the
offline issue's 0-100 scale (100 * the `normalized_score` column, i.e. `datasets.normalized_score`)
as IQM and mean with stratified bootstrap 95% intervals, and the encoders' probe R^2 (endo, exo).

Rows with a non-empty `eval_on` are evaluations of a run's final policy under other distractor
params (`experiments.generalisation_rows`); they are kept out of the main table and curves and
shown in their own table: per method, the IQM of the final return under its own params and
under each target.

A *method* is everything but the task and the seed: agent, sweep setting, observation mode and
distractor/difficulty; a *task* is an env. Scores are the last evaluation point of each run.
All statistics come from `stats` with a fixed bootstrap seed, so `jaxrl-suite report DIR`
rebuilds byte-identical tables; every file is written atomically (`runs.atomic_write_bytes`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from jaxrl_suite import stats
from jaxrl_suite.runs import atomic_write_bytes

METHOD_KEYS = ("agent", "setting", "obs", "distractor", "difficulty")
NUM_RESAMPLES = 2000
CURVE_RESAMPLES = 500
SEED = 0


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """results.csv as a DataFrame with a `method` label column; a missing file or column raises ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist: run the experiment first (`jaxrl-suite run FILE.toml --out DIR`)")
    frame = pd.read_csv(path, keep_default_na=False, na_values=["nan", "NaN"])
    required = set(METHOD_KEYS) | {"env", "seed", "step", "env_steps", "return_mean", "normalized_score", "diverged"}
    missing = sorted(required - set(frame.columns))
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; it must be written by `jaxrl-suite run`")
    frame["setting"] = frame["setting"].astype(str)
    # results written before generalisation rows existed have no eval_on column: all training rows
    frame["eval_on"] = frame["eval_on"].astype(str) if "eval_on" in frame.columns else ""
    for column in frame.columns:
        if column.startswith("probe"):
            # runs without a probe (or generalisation rows) leave these cells empty
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["method"] = [method_label(r) for r in frame[list(METHOD_KEYS)].to_dict("records")]
    return frame


def training_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the runs' own evaluations (empty `eval_on`)."""
    return frame[frame["eval_on"] == ""].reset_index(drop=True)


def generalisation_table(frame: pd.DataFrame) -> str:
    """Markdown: per method, IQM final return [95% CI] under its own params and under each `eval_on` target ('' if none)."""
    evals = frame[frame["eval_on"] != ""]
    if evals.empty:
        return ""
    final = final_scores(training_rows(frame))
    targets = list(dict.fromkeys(evals["eval_on"]))
    lines = [
        "| method | task | seeds | own (last training eval) | " + " | ".join(f"on {t}" for t in targets) + " |",
        "|---|---|---|---|" + "---|" * len(targets),
    ]
    for method in _methods_in_order(evals):
        for env in sorted(evals[evals["method"] == method]["env"].unique()):
            own = final[(final["method"] == method) & (final["env"] == env)]
            cells = [_iqm_cell(own["return_mean"])]
            for target in targets:
                rows = evals[(evals["method"] == method) & (evals["env"] == env) & (evals["eval_on"] == target)]
                cells.append(_iqm_cell(rows["return_mean"]) if len(rows) else "n/a")
            lines.append(f"| {method} | {env} | {own['seed'].nunique()} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _ci_cell(values: Any, metric: str, digits: int | None = None) -> str:
    """'point [low, high]' of a metric over the finite values (bootstrap 95% CI), or 'n/a' if none; digits default to return_digits."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return "n/a"
    ci = stats.stratified_bootstrap_ci(values, stats.METRICS[metric], NUM_RESAMPLES, seed=SEED)
    return _interval(*ci, return_digits(values) if digits is None else digits)


def _iqm_cell(values: pd.Series) -> str:
    return _ci_cell(values.to_numpy(np.float64), "IQM")


def probe_table(final: pd.DataFrame, methods: Sequence[str], columns: Sequence[str]) -> str:
    """Markdown: per method, the mean final value of each probe column with a 95% bootstrap interval."""
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for method in methods:
        rows = final[final["method"] == method]
        cells = [_ci_cell(rows[column].to_numpy(np.float64), "Mean", 3) for column in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def offline_rows(final: pd.DataFrame) -> pd.DataFrame:
    """The final rows of offline runs (non-empty `dataset`; none in an online experiment's results)."""
    if "dataset" not in final.columns:
        return final.iloc[:0]
    return final[final["dataset"].astype(str) != ""]


def offline_table(final: pd.DataFrame, methods: Sequence[str]) -> str:
    """Markdown: per offline method, normalised score x 100 (IQM, mean; stratified bootstrap 95% CI) and probe R^2."""
    rows = offline_rows(final)
    if rows.empty:
        return ""
    probes = [c for c in ("probe_endo_r2", "probe_exo_r2") if c in rows.columns]
    lines = [
        "| dataset | agent | representation | seeds | IQM normalised score [95% CI] | mean normalised score [95% CI] | "
        "endo R^2 | exo R^2 | diverged |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        cell = rows[rows["method"] == method]
        if cell.empty:
            continue
        first = cell.iloc[0]
        # the setting holds dataset and representation first; anything after them is a sweep value
        rest = ", ".join(p for p in str(first["setting"]).split(", ") if not p.startswith(("dataset=", "representation=")))
        representation = str(first["representation"]) + (f" [{rest}]" if rest else "")
        scores = 100.0 * cell["normalized_score"].to_numpy(np.float64)
        iqm = stats.stratified_bootstrap_ci(scores, stats.METRICS["IQM"], NUM_RESAMPLES, seed=SEED)
        mean = stats.stratified_bootstrap_ci(scores, stats.METRICS["Mean"], NUM_RESAMPLES, seed=SEED)
        probe_cells = [
            _ci_cell(cell[column].to_numpy(np.float64) if column in probes else [], "Mean", 2)
            for column in ("probe_endo_r2", "probe_exo_r2")
        ]
        lines.append(
            f"| {first['dataset']} | {first['agent']} | {representation} | {len(cell)} | {_interval(*iqm, 1)} | {_interval(*mean, 1)} | "
            f"{probe_cells[0]} | {probe_cells[1]} | {int(cell['diverged'].sum())}/{len(cell)} |"
        )
    return "\n".join(lines) + "\n"


def method_label(row: dict) -> str:
    """'ppo [lr=1e-3] · state · noise/hard' from a row's method columns."""
    setting = f" [{row['setting']}]" if row["setting"] else ""
    return f"{row['agent']}{setting} · {row['obs']} · {row['distractor']}/{row['difficulty']}"


def final_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, env, seed): its last evaluation point."""
    last = frame.groupby(["method", "env", "seed"])["step"].transform("max")
    return frame[frame["step"] == last].sort_values(["method", "env", "seed"]).reset_index(drop=True)


def return_digits(values: np.ndarray) -> int:
    """Decimals to print returns with: 1 for DMC-scale returns, 3 when every |return| < 10 (success rates in [0, 1])."""
    finite = np.abs(values[np.isfinite(values)])
    return 3 if finite.size and finite.max() < 10 else 1


def _interval(point: float, low: float, high: float, digits: int) -> str:
    if not np.isfinite(point):
        return "n/a"
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _methods_in_order(frame: pd.DataFrame) -> list[str]:
    """Methods in the order they first appear in results.csv (the experiment's run order)."""
    return list(dict.fromkeys(frame["method"]))


def make_table(frame: pd.DataFrame, title: str = "") -> str:
    """table.md: per method and task, then aggregates over tasks of normalised scores."""
    final = final_scores(frame)
    methods = _methods_in_order(frame)
    lines = [f"# {title or 'Results'}: final scores", ""]
    seeds = sorted(final["seed"].unique())
    steps = sorted(final["env_steps"].unique())
    lines.append(
        f"Final evaluation return per method and task over {len(seeds)} seeds at {', '.join(map(str, steps))} env steps: "
        "IQM and mean with stratified bootstrap 95% intervals "
        f"({NUM_RESAMPLES} resamples, percentile method). Normalised score = (return - random) / (expert - random), "
        "see jaxrl_suite/references.py."
    )
    lines += ["", "| method | task | seeds | IQM return [95% CI] | mean return [95% CI] | mean normalised score | diverged |", "|---|---|---|---|---|---|---|"]
    for method in methods:
        rows = final[final["method"] == method]
        for env in sorted(rows["env"].unique()):
            cell = rows[rows["env"] == env]
            returns = cell["return_mean"].to_numpy(np.float64)
            iqm = stats.stratified_bootstrap_ci(returns, stats.METRICS["IQM"], NUM_RESAMPLES, seed=SEED)
            mean = stats.stratified_bootstrap_ci(returns, stats.METRICS["Mean"], NUM_RESAMPLES, seed=SEED)
            norm = float(np.mean(cell["normalized_score"].to_numpy(np.float64)))
            norm_text = f"{norm:.3f}" if np.isfinite(norm) else "n/a"
            digits = return_digits(returns)
            lines.append(
                f"| {method} | {env} | {len(cell)} | {_interval(*iqm, digits)} | {_interval(*mean, digits)} | {norm_text} | "
                f"{int(cell['diverged'].sum())}/{len(cell)} |"
            )
    offline = offline_table(final, methods)
    if offline:
        lines += ["", "## Offline: normalised score per dataset, agent and representation", ""]
        lines += [
            "100 * (return - random) / (expert - random) (`datasets.normalized_score`), final evaluation of each seed: IQM and "
            "mean with stratified bootstrap 95% intervals. endo / exo R^2: held-out ridge probe of the agent's input features "
            "(the frozen pretrained encoder, or the standardised observation for raw) for the dataset's endogenous and exogenous "
            "state, mean over seeds [95% bootstrap CI] (`pretrain.probe_members`).",
            "",
            offline.rstrip("\n"),
        ]
    lines += ["", "## Aggregate over tasks (normalised scores)", ""]
    lines += ["Stratified bootstrap over seeds within each task (Agarwal et al. 2021); optimality gap at 1 (lower is better).", ""]
    lines += ["| method | tasks | runs | IQM | median | mean | optimality gap |", "|---|---|---|---|---|---|---|"]
    notes = []
    for method, result in aggregates(final, methods).items():
        if isinstance(result, str):
            notes.append(f"- {method}: {result}")
            continue
        agg, num_tasks, num_runs = result
        cells = " | ".join(_interval(*agg[name], 3) for name in stats.METRICS)
        lines.append(f"| {method} | {num_tasks} | {num_runs} | {cells} |")
    if notes:
        lines += ["", "Not aggregated:", *notes]
    return "\n".join(lines) + "\n"


def aggregates(final: pd.DataFrame, methods: Sequence[str]) -> dict[str, object]:
    """{method: ({metric: (point, low, high)}, num_tasks, num_runs)} of normalised scores, or a reason string."""
    out: dict[str, object] = {}
    for method in methods:
        rows = final[final["method"] == method]
        per_task = {env: g["normalized_score"].to_numpy(np.float64) for env, g in rows.groupby("env")}
        if not all(np.all(np.isfinite(v)) for v in per_task.values()):
            out[method] = "no random/expert reference for some task (see references.py)"
            continue
        try:
            matrix, tasks = stats.score_matrix(per_task)
        except ValueError as err:
            out[method] = str(err)
            continue
        out[method] = (stats.aggregate(matrix, num_resamples=NUM_RESAMPLES, seed=SEED), len(tasks), matrix.size)
    return out


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_aggregate(final: pd.DataFrame, methods: Sequence[str], path: Path) -> bool:
    """aggregate.png: one panel per metric, each method's point estimate and 95% interval; False if nothing to plot."""
    results = {m: r for m, r in aggregates(final, methods).items() if not isinstance(r, str)}
    if not results:
        return False
    plt = _pyplot()
    names = list(stats.METRICS)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 0.6 * len(results) + 1.6), sharey=True)
    labels = list(results)
    for ax, name in zip(axes, names):
        for i, method in enumerate(labels):
            point, low, high = results[method][0][name]
            ax.barh(i, high - low, left=low, height=0.6, color=f"C{i}", alpha=0.6)
            ax.plot([point, point], [i - 0.3, i + 0.3], color="k", lw=2)
        ax.set_title(name + (" (lower better)" if name == "Optimality gap" else ""))
        ax.set_xlabel("normalised score")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)))
    axes[0].set_yticklabels(labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    _save_figure(fig, path)
    return True


def plot_learning_curves(frame: pd.DataFrame, methods: Sequence[str], path: Path) -> None:
    """learning_curves.png: mean evaluation return over seeds with a 95% bootstrap band, one panel per task."""
    plt = _pyplot()
    envs = sorted(frame["env"].unique())
    fig, axes = plt.subplots(1, len(envs), figsize=(6 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for i, method in enumerate(methods):
            rows = frame[(frame["method"] == method) & (frame["env"] == env)]
            if rows.empty:
                continue
            xs, means, lows, highs = [], [], [], []
            # offline runs never step the env (env_steps 0): their curve is over updates
            x_column = "step" if (rows["env_steps"] == 0).all() else "env_steps"
            for x, group in rows.groupby(x_column):
                point, low, high = stats.stratified_bootstrap_ci(group["return_mean"].to_numpy(np.float64), stats.METRICS["Mean"], CURVE_RESAMPLES, seed=SEED)
                xs.append(x), means.append(point), lows.append(low), highs.append(high)
            ax.fill_between(xs, lows, highs, color=f"C{i}", alpha=0.2)
            ax.plot(xs, means, color=f"C{i}", lw=2, label=f"{method} (n={rows['seed'].nunique()})")
        ax.set_title(env)
        ax.set_xlabel("env steps (offline runs: updates)" if "dataset" in frame.columns else "env steps")
        ax.set_ylabel("evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)


def probe_columns(frame: pd.DataFrame) -> list[str]:
    """The probe columns results.csv carries with at least one value (none when the runs measured no probe)."""
    return [c for c in frame.columns if c.startswith("probe") and frame[c].notna().any()]


def plot_probe(final: pd.DataFrame, methods: Sequence[str], columns: Sequence[str], path: Path) -> None:
    """probe.png: mean final probe R^2 per method with a 95% bootstrap interval, one panel per probe column."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 0.5 * len(methods) + 1.6), sharey=True, squeeze=False)
    for ax, column in zip(axes[0], columns):
        for i, method in enumerate(methods):
            values = final[final["method"] == method][column].to_numpy(np.float64)
            values = values[np.isfinite(values)]
            if values.size:
                point, low, high = stats.stratified_bootstrap_ci(values, stats.METRICS["Mean"], CURVE_RESAMPLES, seed=SEED)
                ax.errorbar(point, i, xerr=[[point - low], [high - point]], fmt="o", color=f"C{i}")
        ax.set_title(column)
        ax.set_xlabel("R^2 (held-out)")
    axes[0][0].set_yticks(range(len(methods)))
    axes[0][0].set_yticklabels(methods, fontsize=8)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    _save_figure(fig, path)


def build_report(out_dir: str | os.PathLike) -> Path:
    """Write table.md, aggregate.png, plots/ and report.md of OUT from OUT/results.csv; returns report.md's path."""
    out = Path(out_dir)
    everything = read_results(out / "results.csv")
    frame = training_rows(everything)
    meta = json.loads((out / "experiment.json").read_text()) if (out / "experiment.json").is_file() else {}
    title = meta.get("name") or str(frame["experiment"].iloc[0] if "experiment" in frame else out.name)
    methods = _methods_in_order(frame)
    final = final_scores(frame)
    table = make_table(frame, title)
    atomic_write_bytes(out / "table.md", table.encode())
    has_aggregate = plot_aggregate(final, methods, out / "aggregate.png")
    plot_learning_curves(frame, methods, out / "plots" / "learning_curves.png")
    probes = probe_columns(frame)
    if probes:
        plot_probe(final, methods, probes, out / "plots" / "probe.png")

    lines = [f"# Experiment report: {title}", ""]
    if meta.get("description"):
        lines += [meta["description"], ""]
    if meta.get("file"):
        lines += [f"Experiment file: `{meta['file']}`; {meta.get('seeds', '?')} seeds per setting.", ""]
    lines += ["Files: [results.csv](results.csv) (one row per run, seed and evaluation point), [table.md](table.md)."]
    if has_aggregate:
        lines += ["", "## Aggregate metrics", "", "![aggregate](aggregate.png)"]
    lines += ["", "## Learning curves", "", "![learning curves](plots/learning_curves.png)"]
    if probes:
        lines += ["", "## Probe R^2", "", "Final value per method: mean over seeds [95% bootstrap CI].", ""]
        lines += [probe_table(final, methods, probes), "![probe](plots/probe.png)"]
    general = generalisation_table(everything)
    if general:
        lines += [
            "", "## Generalisation", "",
            "Final policies evaluated under other distractor params (`eval_on`): IQM of the evaluation return over seeds "
            "[stratified bootstrap 95% CI]; `own` is each run's last evaluation under its training params. A split "
            "(train/test) is one draw per member from that split's ranges.", "",
            general,
        ]
    lines += ["", table.replace("# ", "## ", 1)]
    runs_dir = out / "runs"
    if runs_dir.is_dir():
        timings_file = out / "timings.json"
        timings = json.loads(timings_file.read_text())["wall_time_s"] if timings_file.is_file() else {}
        lines += ["## Runs", "", "| run | wall time (s, incl. compile) | directory |", "|---|---|---|"]
        for run in sorted(p.name for p in runs_dir.iterdir() if p.is_dir()):
            wall = f"{timings[run]:.1f}" if run in timings else "n/a"
            lines.append(f"| {run} | {wall} | [runs/{run}](runs/{run}) |")
    report_path = out / "report.md"
    atomic_write_bytes(report_path, ("\n".join(lines) + "\n").encode())
    return report_path


def report_command(argv: Sequence[str]) -> Path:
    """`jaxrl-suite report DIR`: rebuild every table and plot of DIR from DIR/results.csv."""
    parser = argparse.ArgumentParser(prog="jaxrl-suite report", description="Rebuild table.md, aggregate.png, plots and report.md from DIR/results.csv.")
    parser.add_argument("dir")
    args = parser.parse_args(argv)
    path = build_report(args.dir)
    print((Path(args.dir) / "table.md").read_text())
    print(f"report: {path}")
    return path
