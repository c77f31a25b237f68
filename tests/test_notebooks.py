"""Every notebook runs top to bottom on a real Jupyter kernel against real results."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from crate_dask.config import build_settings
from crate_dask.demo import make_demo_library
from crate_dask.run.api import run_analysis

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
# what each notebook must print about the demo results (6 tracks + 4 broken files)
EXPECT = {
    "01_quickstart.ipynb": ["audio files in", "dashboard: http", "complete - 10 rows", "10 files, 6 with a tempo"],
    "02_explore_library.ipynb": ["10 files in", "3 of 10 files have an error", "retry: ", "groups of duplicates",
                                 "mixes with "],
    "03_preview_rename.ipynb": ["10 files", "'rename': 6", "'error-row': 3"],
}
#: notebooks that must show plots (Bokeh output in the cell outputs)
PLOTS = {"01_quickstart.ipynb", "02_explore_library.ipynb"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb")
    make_demo_library(root / "lib", n_tracks=6, seconds=8.0)
    run_analysis(root / "lib", root / "out", build_settings(cli={"sequential": True, "progress": False}))
    return root / "out"


def test_every_notebook_is_covered():
    assert {p.name for p in NOTEBOOKS} == set(EXPECT)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, results, monkeypatch, tmp_path):
    monkeypatch.setenv("CRATE_RESULTS", str(results))
    monkeypatch.setenv("CRATE_DEMO_DIR", str(tmp_path / "demo"))
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    for expected in EXPECT[path.name]:
        assert expected in text, (expected, text[:2000])
    if path.name in PLOTS:
        shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                 if "application/vnd.bokehjs_exec.v0+json" in o.get("data", {})]
        assert shown, "the notebook shows no plot"
