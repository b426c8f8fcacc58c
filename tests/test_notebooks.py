"""The tutorial notebooks run top to bottom at their SMALL settings, show what they promise, and are committed clean.

Each notebook is executed by nbclient in a fresh python3 kernel (this interpreter: jupyter_client
swaps the kernelspec's "python" for sys.executable) with JAXRL_SUITE_NOTEBOOK_SMALL=1 and JAX's
persistent compilation cache in <repo>/.jax_cache, so a second run reuses the compiled programs.
A cell error fails the test with the cell's traceback. The generator's output must equal the
committed files, so editing one without the other is caught.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
CELL_TIMEOUT_S = 600

# notebook -> (output MIME types that must appear, text that must appear in its printed output)
EXPECTED = {
    "01_quickstart.ipynb": ({"image/png", "image/gif"}, ["endo (controllable)", "learned", "oracle", "random"]),
    "02_distractors.ipynb": ({"image/png", "image/gif"}, ["pixel distractors:", "CartPole-v1+noise", "inverted_pendulum"]),
    "03_representations.ipynb": ({"image/png", "text/markdown"}, ["reconstruction", "simsr", "| representation |"]),
    "04_offline.ipynb": ({"image/png"}, ["sha256", "TD3+BC + BPR", "IQL raw"]),
    "05_world_models.ipynb": ({"image/png"}, ["world-model parts:", "decoded"]),
    "06_sweeps.ipynb": ({"image/png"}, ["members; first three", "IQM normalised score", "device(s):"]),
}


def outputs_of(notebook: nbformat.NotebookNode) -> tuple[set[str], str]:
    """MIME types of rich outputs and the concatenated text of every output."""
    mimes, texts = set(), []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                texts.append(out.get("text", ""))
            for mime, value in out.get("data", {}).items():
                mimes.add(mime)
                if mime in ("text/plain", "text/markdown"):
                    texts.append(value if isinstance(value, str) else "".join(value))
    return mimes, "\n".join(texts)


def test_every_notebook_in_the_repo_is_listed():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_notebook_has_no_outputs_and_opens_with_colab_install_and_small_switch(name):
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: a code cell has outputs"
            assert cell.execution_count is None, f"{name}: a code cell has an execution count"
    code = [c.source for c in notebook.cells if c.cell_type == "code"]
    assert 'if "google.colab" in sys.modules' in code[0] and "%pip install" in code[0]
    assert 'SMALL = os.environ.get("JAXRL_SUITE_NOTEBOOK_SMALL", "0") == "1"' in code[1]


def test_generator_reproduces_the_committed_notebooks(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOK_DIR / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path in module.main(tmp_path):
        assert path.read_text() == (NOTEBOOK_DIR / path.name).read_text(), f"{path.name} differs from the generator's output"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_top_to_bottom_at_small_settings(name, tmp_path, monkeypatch):
    # the kernel inherits this process's environment
    monkeypatch.setenv("JAXRL_SUITE_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(REPO / ".jax_cache"))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    elapsed = time.perf_counter() - start
    mimes, text = outputs_of(notebook)
    want_mimes, want_text = EXPECTED[name]
    assert want_mimes <= mimes, f"{name}: missing outputs {sorted(want_mimes - mimes)} (got {sorted(mimes)})"
    for snippet in want_text:
        assert snippet in text, f"{name}: expected {snippet!r} in the printed output"
    assert "Traceback" not in text
    print(f"{name}: {elapsed:.1f} s")


def test_extending_guide_code_runs(tmp_path):
    """docs/extending.md's Python blocks, run in order in a fresh interpreter (they register a task, a
    distractor, an objective and an agent, which must not leak into this process's registries)."""
    import re
    import subprocess
    import sys

    text = (REPO / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 4, "the guide has one example per plug-in point: task, distractor, objective, agent"
    script = tmp_path / "extending.py"
    script.write_text("\n\n".join(blocks) + '\nprint("extending guide ok")\n')
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(REPO / ".jax_cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "extending guide ok" in done.stdout
