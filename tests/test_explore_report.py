"""The HTML report: self-contained, and in headless Chromium: no script errors, plots drawn, a virtual track table."""

from __future__ import annotations

import html
import re
import shutil
import subprocess

import pytest

from crate_dask import open_results
from crate_dask.explore.synthetic import write_synthetic_results
from crate_dask.store.corrections import load_corrections, save_corrections
from tests.conftest import run_cli

N = 100_000
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    out = write_synthetic_results(root / "out", n_rows=N, partition_size=5000)
    r = open_results(out)
    fixes = load_corrections(out)
    for rel in r.page(0, 3, where="bpm is not null", columns=["relpath"]).relpath:
        fixes.set(r.row(rel), bpm=100.0, key="Am")
    save_corrections(out, fixes)
    p = run_cli("report", str(out), "--html", str(root / "report.html"))
    assert p.returncode == 0, p.stderr
    assert f"({N} tracks" in p.stdout
    return out, root / "report.html"


def test_report_is_one_offline_file(report):
    _, path = report
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text, re.I)   # nothing loaded from anywhere
    assert "Bokeh" in text and "Keys on the Camelot wheel" in text and "Tag BPM half or double" in text
    assert "Duplicates" in text and "Errors by cause" in text and "retry with" in text


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")
def test_report_in_headless_chromium(report, tmp_path):
    out, path = report
    # the view in the URL fragment: search 'moon', BPM 120..130, sorted by BPM descending
    url = path.as_uri() + "#q=moon&bpm=120..130&sort=-bpm"
    p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000", "--dump-dom", url],
                       capture_output=True, text=True, timeout=240)
    dom = p.stdout
    assert "</html>" in dom, p.stderr[-2000:]
    errors = re.search(r'<pre id="script-errors">(.*?)</pre>', dom, re.S).group(1)
    assert errors.strip() == "", errors
    status = re.search(r'id="plots-status" data-expected="(\d+)" data-rendered="(\d+)"', dom)
    assert status and int(status.group(1)) == 6 and status.group(2) == status.group(1)   # every plot drew
    shown = int(re.search(r'id="count" data-shown="(\d+)">\d+ of (\d+) tracks', dom).group(1))
    total = int(re.search(r'id="count" data-shown="\d+">\d+ of (\d+) tracks', dom).group(1))
    want = open_results(out).count("(relpath contains 'moon' or artist contains 'moon' or title contains 'moon') "
                                   "and bpm between 120 and 130")
    assert total == N and shown == want and 0 < shown < N
    rows = re.findall(r'<div class="row[^"]*" data-i="\d+">(.*?)</div></div>', dom)
    assert 10 <= len(rows) <= 80                                # a window of rows, not 100,000
    cells = [re.findall(r'title="([^"]*)"', r) for r in rows]
    bpms = [float(c[3]) for c in cells]                          # columns: relpath, artist, title, bpm, ...
    assert bpms == sorted(bpms, reverse=True) and all(120 <= b <= 130 for b in bpms)
    assert all("moon" in html.unescape(" ".join(c[:3])).lower() for c in cells)
