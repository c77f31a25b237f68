"""Every notebook runs top to bottom on a real Jupyter kernel against real results."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from crate_dask.analyze import run_analysis
from crate_dask.config import build_settings

from conftest import make_library

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb")
    make_library(root / "lib", 12)
    (root / "lib" / "broken.mp3").write_text("not audio")
    run_analysis(root / "lib", root / "out", build_settings(cli={"metadata_only": True, "sequential": True,
                                                                  "progress": False, "partition_size": 5}))
    return root / "out"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, results, monkeypatch, tmp_path):
    monkeypatch.setenv("CRATE_RESULTS", str(results))
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "13 files in" in text
    assert "1 of 13 files have an error" in text
