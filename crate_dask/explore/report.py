"""``crate-dask report OUT --html report.html``: one self-contained HTML file about a library.

Plots are made with Bokeh: it is already a dependency (the Dask dashboard
ships it), it is well kept, and ``bokeh.resources`` inlines its JavaScript, so
the file opens offline with no network access (Altair would need the extra
``vl-convert-python`` package to inline Vega, Plotly adds a 3.5 MB bundle;
Bokeh's core bundle is 1.3 MB). The plots: BPM histogram, keys on a Camelot
wheel, formats and bitrates, errors by cause, analysis time.

The table of all tracks is a small hand-written virtual-scrolling table (no
framework): the rows are embedded once as columnar JSON; sorting, filtering and
search run in JavaScript over index arrays, and only the rows in view (plus a
margin) are in the DOM, so 100,000 tracks stay fast, as the design document
prescribes for the browser. Filter and sort are also read from the URL
fragment (``report.html#q=moon&sort=-bpm&bpm=120..130``), which makes a view
linkable and lets a headless browser test it.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crate_dask import __version__

TRACK_COLUMNS = ["relpath", "artist", "title", "bpm", "bpm_detected", "key_camelot", "key", "corrected", "format",
                 "bitrate_kbps", "duration_s", "error"]
TABLE_ROWS = 300     # rows shown per QA / duplicates table (counts are exact)


def write_report(results, path: str | os.PathLike, *, max_ber: float | None = None) -> dict[str, Any]:
    """Write the report of ``results`` (from :func:`crate_dask.open_results`) to ``path``; returns facts about it.

    Returns
    -------
    dict
        ``tracks`` (rows in the table), ``plots`` (number of Bokeh plots), ``bytes`` (file size).
    """
    summary = results.summary()
    qa = results.qa()
    dups = results.duplicates(**({"max_ber": max_ber} if max_ber is not None else {}))
    tracks = _tracks(results)
    plots = summary_plots(summary)
    doc = _page(results, summary, qa, dups, tracks, plots)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, path)
    return {"tracks": tracks["n"], "plots": len(plots), "bytes": path.stat().st_size}


# --- data ---------------------------------------------------------------------------------------------

def _tracks(results) -> dict[str, Any]:
    """Every track as columnar JSON-able lists (one scan, a few columns)."""
    cols = [c for c in TRACK_COLUMNS if c in results.columns]
    data: dict[str, list] = {c: [] for c in cols}
    for t in results.batches(cols):
        for c in cols:
            v = t.column(c).to_pylist()
            if c in ("bpm", "bpm_detected", "bitrate_kbps", "duration_s"):   # bpm keeps its 2 stored decimals
                v = [None if x is None or not math.isfinite(x) else round(x, 2 if c.startswith("bpm") else 1)
                     for x in v]
            elif c == "corrected":
                v = [1 if x else 0 for x in v]
            data[c].extend(v)
    return {"n": len(data[cols[0]]) if cols else 0, "columns": cols, "data": data}


# --- plots --------------------------------------------------------------------------------------------

def summary_plots(s: dict[str, Any]) -> list:
    """The Bokeh figures of a summary (:meth:`Results.summary`): BPM, Camelot wheel, formats, bitrates, errors, time."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    out = []
    tools = "save,reset"
    # BPM histogram
    e, c = np.array(s["bpm_histogram"]["edges"]), np.array(s["bpm_histogram"]["counts"])
    f = figure(title=f"Tempo ({s['analysed']} tracks with a BPM)", height=260, width=560, tools=tools,
               x_axis_label="BPM", y_axis_label="tracks", name="bpm")
    src = ColumnDataSource({"left": e[:-1], "right": e[1:], "top": c,
                            "label": [f"{a:.0f}-{b:.0f}" for a, b in zip(e[:-1], e[1:])]})
    f.quad(left="left", right="right", top="top", bottom=0, source=src, color="#3b7dd8", line_color="white")
    f.add_tools(HoverTool(tooltips=[("BPM", "@label"), ("tracks", "@top")]))
    out.append(f)
    out.append(_camelot_wheel(s["keys"]))
    # formats and bitrates
    fm = s["formats"] or {"none": 0}
    f = figure(title="Formats", x_range=list(fm), height=260, width=360, tools=tools, name="formats",
               y_axis_label="files")
    f.vbar(x=list(fm), top=list(fm.values()), width=0.8, color="#6a9f3a")
    out.append(f)
    be, bc = s["bitrates"]["edges"], s["bitrates"]["counts"]
    labels = [f"<{b:.0f}" if math.isfinite(b) else f">{a:.0f}" for a, b in zip(be[:-1], be[1:])]
    f = figure(title="Bitrates (kbit/s)", x_range=labels, height=260, width=460, tools=tools, name="bitrates",
               y_axis_label="files")
    f.vbar(x=labels, top=bc, width=0.8, color="#c98a1b")
    out.append(f)
    # errors by cause
    causes = s["errors_by_cause"][:12]
    names = [c["cause"][:60] for c in causes][::-1] or ["no errors"]
    f = figure(title=f"Errors by cause ({s['errors']} files)", y_range=names, height=max(200, 40 + 26 * len(names)),
               width=760, tools=tools, name="errors", x_axis_label="files")
    f.hbar(y=names, right=[c["count"] for c in causes][::-1] or [0], height=0.7, color="#c0392b")
    out.append(f)
    # analysis time
    te, tc = s["analysis_s"]["edges"], s["analysis_s"]["counts"]
    tl = [f"{a:g}-{b:g} s" if math.isfinite(b) else f">{a:g} s" for a, b in zip(te[:-1], te[1:])]
    mean = s["analysis_s"]["mean"]
    f = figure(title=f"Analysis time per file (mean {mean if mean is not None else '-'} s, "
                     f"total {s['analysis_s']['total'] / 3600:.2f} h CPU)", x_range=tl, height=260, width=560,
               tools=tools, name="analysis_time", y_axis_label="files")
    f.vbar(x=tl, top=tc, width=0.8, color="#7d5ba6")
    f.xaxis.major_label_orientation = 0.8
    out.append(f)
    return out


def _camelot_wheel(keys: dict[str, int]):
    """The 24 keys as wedges: majors (B) outside, minors (A) inside, 12 at the top like the printed wheel."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    from crate_dask.features.notation import parse_key

    rows = []
    top = max(keys.values()) if keys else 1
    for letter, (r0, r1) in (("B", (0.62, 1.0)), ("A", (0.25, 0.62))):
        for n in range(1, 13):
            code = f"{n}{letter}"
            mid = math.pi / 2 - (n - 12) * 2 * math.pi / 12       # 12 at the top, clockwise
            count = int(keys.get(code, 0))
            shade = count / top if top else 0.0
            rows.append({"start": mid - math.pi / 12, "end": mid + math.pi / 12, "inner": r0, "outer": r1,
                         "code": code, "name": parse_key(code), "count": count,
                         "color": _blend(shade), "lx": (r0 + r1) / 2 * math.cos(mid),
                         "ly": (r0 + r1) / 2 * math.sin(mid)})
    src = ColumnDataSource(pd.DataFrame(rows))
    f = figure(title="Keys on the Camelot wheel", height=380, width=380, x_range=(-1.1, 1.1), y_range=(-1.1, 1.1),
               tools="save,reset", name="camelot", match_aspect=True)
    f.annular_wedge(x=0, y=0, inner_radius="inner", outer_radius="outer", start_angle="start", end_angle="end",
                    color="color", line_color="white", source=src)
    f.text(x="lx", y="ly", text="code", source=src, text_align="center", text_baseline="middle",
           text_font_size="9pt")
    f.add_tools(HoverTool(tooltips=[("key", "@code (@name)"), ("tracks", "@count")]))
    f.axis.visible = False
    f.grid.visible = False
    return f


def _blend(x: float) -> str:
    lo, hi = np.array([236, 242, 250]), np.array([31, 90, 180])
    r, g, b = (lo + (hi - lo) * min(max(x, 0.0), 1.0)).astype(int)
    return f"#{r:02x}{g:02x}{b:02x}"


# --- the page -----------------------------------------------------------------------------------------

def _table(df: pd.DataFrame, *, limit: int = TABLE_ROWS, css: str = "qa") -> str:
    if df is None or df.empty:
        return "<p class='none'>none</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for rec in df.head(limit).itertuples(index=False):
        body.append("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in rec) + "</tr>")
    more = f"<p class='more'>first {limit} of {len(df)}</p>" if len(df) > limit else ""
    return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else ""
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def _json_for_script(data: Any) -> str:
    # inside <script>, "</" would end the element: escape it (and the other HTML-significant characters)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c").replace(
        ">", "\\u003e").replace("&", "\\u0026")


def _page(results, s, qa, dups, tracks, plots) -> str:
    from bokeh.embed import components
    from bokeh.resources import Resources

    from crate_dask.explore.duplicates import summary as dup_summary

    script, divs = components(plots)
    bokeh_js = Resources(mode="inline", components=["bokeh"]).render_js()
    esc = html.escape
    counts = qa.get("counts", {})
    qa_titles = {"tag_bpm_octave": "Tag BPM half or double the detected tempo",
                 "tag_key_disagrees": "Key tag disagrees with the detected key",
                 "missing_tags": "Missing artist or title",
                 "needs_review": "Needs review (uncertain analysis)"}
    qa_html = "".join(f"<h3>{esc(t)} <span class='n'>{counts.get(k, 0)}</span></h3>{_table(qa.get(k))}"
                      for k, t in qa_titles.items() if k in qa)
    err_rows = pd.DataFrame([{"cause": e["cause"], "files": e["count"], "example": e["example"],
                              "retry with": e["retry"]} for e in s["errors_by_cause"]])
    ds = dup_summary(dups)
    dup_view = dups.assign(keep=dups["keep"].map({True: "KEEP", False: ""})) if len(dups) else dups
    fmt_line = ", ".join(f"{esc(str(k))}: {v}" for k, v in s["formats"].items())
    title = f"crate_dask report: {results.out.name}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<script>window.__errors=[];window.addEventListener('error',function(e){{window.__errors.push(String(e.message));
var p=document.getElementById('script-errors');if(p)p.textContent=window.__errors.join('\\n');}});</script>
<style>{_CSS}</style>
{bokeh_js}
</head><body>
<h1>{esc(title)}</h1>
<p class="meta">{s['files']} files ({s['duration_h']} h of audio), {s['analysed']} with a tempo, {s['errors']} with an
error, {s['corrected']} corrected by hand &middot; {fmt_line} &middot; results: {esc(str(results.out))}
&middot; made {time.strftime('%Y-%m-%d %H:%M')} by crate_dask {esc(__version__)}</p>
<pre id="script-errors"></pre>
<div id="plots-status" data-expected="{len(plots)}" data-rendered="0"></div>
<section class="plots">{''.join(f'<div class="plot">{d}</div>' for d in divs)}</section>
<h2>Errors by cause</h2>{_table(err_rows)}
<h2>Library QA</h2>{qa_html}
<h2>Duplicates <span class="n">{ds['groups']} groups, {ds['redundant']} files could go</span></h2>
{_table(dup_view, limit=TABLE_ROWS * 2, css='dups')}
<h2>All tracks</h2>
<div class="controls">
 <input id="search" type="search" placeholder="search artist, title, path" size="32">
 BPM <input id="bpm-lo" type="number" step="any" size="5"> to <input id="bpm-hi" type="number" step="any" size="5">
 key <select id="key"><option value="">any</option></select>
 <label><input id="only-corrected" type="checkbox"> corrected</label>
 <label><input id="only-errors" type="checkbox"> errors</label>
 <span id="count"></span>
</div>
<div id="grid"><div id="grid-head"></div><div id="viewport"><div id="spacer"><div id="rows"></div></div></div></div>
<script type="application/json" id="tracks-data">{_json_for_script(tracks)}</script>
{script}
<script>{_JS}</script>
</body></html>
"""


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.5em}h2{margin-top:1.6em}
.meta{color:#555}.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{border:1px solid #ddd;padding:4px}
table.qa,table.dups{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;
text-align:left}th{background:#f3f3f3}.n{color:#666;font-weight:normal;font-size:.8em}.none{color:#888}
#script-errors:empty{display:none}#script-errors{color:#b00;border:1px solid #b00;padding:4px}
.controls{margin:.5em 0;display:flex;gap:8px;align-items:center;flex-wrap:wrap}
#grid{border:1px solid #ccc;font-size:12px}#grid-head,.row{display:grid;
grid-template-columns:var(--cols)}#grid-head div{background:#eee;font-weight:600;padding:3px 5px;cursor:pointer;
user-select:none;white-space:nowrap;overflow:hidden}#viewport{height:520px;overflow-y:auto;position:relative}
#spacer{position:relative}#rows{position:absolute;left:0;right:0;top:0}.row{height:22px;
border-bottom:1px solid #f0f0f0}.row div{padding:2px 5px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.row.err{background:#fff4f4}.row .corr{color:#0a6;font-weight:600}
"""

# The track table: columnar data, index arrays for filter/sort, only the visible rows in the DOM.
_JS = r"""
(function(){
var T=JSON.parse(document.getElementById('tracks-data').textContent), D=T.data, C=T.columns, N=T.n;
var ROW=22, MARGIN=10, view=[], sortKey=null, sortDir=1;
var widths={relpath:'3fr',artist:'1.4fr',title:'1.6fr',error:'1.6fr'};
var grid=document.getElementById('grid'), head=document.getElementById('grid-head'),
    vp=document.getElementById('viewport'), spacer=document.getElementById('spacer'),
    rowsEl=document.getElementById('rows'), countEl=document.getElementById('count');
grid.style.setProperty('--cols', C.map(function(c){return widths[c]||'0.8fr';}).join(' '));
C.forEach(function(c){var h=document.createElement('div');h.textContent=c;h.dataset.col=c;
  h.onclick=function(){if(sortKey===c){sortDir=-sortDir;}else{sortKey=c;sortDir=1;}apply();};head.appendChild(h);});
var lower={}; ['relpath','artist','title'].forEach(function(c){if(D[c])lower[c]=D[c].map(function(s){
  return s==null?'':String(s).toLowerCase();});});
var keys={}; (D.key_camelot||[]).forEach(function(k){if(k)keys[k]=1;});
var sel=document.getElementById('key');
Object.keys(keys).sort(function(a,b){return parseInt(a)-parseInt(b)||a.localeCompare(b);}).forEach(function(k){
  var o=document.createElement('option');o.value=o.textContent=k;sel.appendChild(o);});
var q=document.getElementById('search'), lo=document.getElementById('bpm-lo'), hi=document.getElementById('bpm-hi'),
    oc=document.getElementById('only-corrected'), oe=document.getElementById('only-errors');
function fromHash(){var h=new URLSearchParams(location.hash.slice(1));
  if(h.has('q'))q.value=h.get('q'); if(h.has('key'))sel.value=h.get('key');
  if(h.has('bpm')){var r=h.get('bpm').split('..');lo.value=r[0]||'';hi.value=r[1]||'';}
  if(h.has('corrected'))oc.checked=true; if(h.has('errors'))oe.checked=true;
  if(h.has('sort')){var s=h.get('sort');sortDir=s[0]==='-'?-1:1;sortKey=s.replace(/^-/,'');}}
function apply(){
  var words=q.value.toLowerCase().split(/\s+/).filter(Boolean), l=parseFloat(lo.value), u=parseFloat(hi.value),
      k=sel.value, bpm=D.bpm, out=[];
  for(var i=0;i<N;i++){
    if(k&&D.key_camelot[i]!==k)continue;
    if(!isNaN(l)&&!(bpm[i]!=null&&bpm[i]>=l))continue;
    if(!isNaN(u)&&!(bpm[i]!=null&&bpm[i]<=u))continue;
    if(oc.checked&&!D.corrected[i])continue;
    if(oe.checked&&D.error[i]==null)continue;
    var ok=true;
    for(var w=0;w<words.length&&ok;w++){ok=false;for(var c in lower){if(lower[c][i].indexOf(words[w])>=0){ok=true;break;}}}
    if(ok)out.push(i);}
  if(sortKey&&D[sortKey]){var col=D[sortKey];out.sort(function(a,b){var x=col[a],y=col[b];
    if(x==null)return y==null?a-b:1; if(y==null)return -1;
    return (x<y?-1:x>y?1:a-b)*sortDir;});}
  view=out; countEl.textContent=view.length+' of '+N+' tracks';
  countEl.dataset.shown=view.length;
  Array.prototype.forEach.call(head.children,function(h){h.textContent=h.dataset.col+
    (h.dataset.col===sortKey?(sortDir>0?' \u25b2':' \u25bc'):'');});
  spacer.style.height=(view.length*ROW)+'px'; vp.scrollTop=0; render();}
function cell(c,v){if(v==null)return '';if(c==='corrected')return v?'\u2713':'';return String(v);}
function render(){
  var first=Math.max(0,Math.floor(vp.scrollTop/ROW)-MARGIN),
      last=Math.min(view.length,Math.ceil((vp.scrollTop+vp.clientHeight)/ROW)+MARGIN), html=[];
  for(var r=first;r<last;r++){var i=view[r], cls='row'+(D.error&&D.error[i]!=null?' err':'');
    html.push('<div class="'+cls+'" data-i="'+i+'">');
    for(var j=0;j<C.length;j++){var c=C[j],v=cell(c,D[c][i]);
      html.push('<div'+(c==='corrected'&&v?' class="corr"':'')+' title="'+esc(v)+'">'+esc(v)+'</div>');}
    html.push('</div>');}
  rowsEl.style.transform='translateY('+(first*ROW)+'px)'; rowsEl.innerHTML=html.join('');
  rowsEl.dataset.first=first; rowsEl.dataset.count=last-first;}
function esc(s){return s.replace(/[&<>"]/g,function(ch){return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[ch];});}
var pending=null; vp.addEventListener('scroll',function(){if(!pending)pending=requestAnimationFrame(function(){
  pending=null;render();});});
var timer=null; [q,lo,hi].forEach(function(el){el.addEventListener('input',function(){clearTimeout(timer);
  timer=setTimeout(apply,150);});});
[sel,oc,oe].forEach(function(el){el.addEventListener('change',apply);});
window.addEventListener('hashchange',function(){fromHash();apply();});
fromHash(); apply();
// plots: how many plot boxes hold a drawn canvas (Bokeh draws inside shadow roots); the tests read this
var st=document.getElementById('plots-status'), tries=0;
function drawn(el){ if(!el)return false; if(el.tagName==='CANVAS'&&el.width>0&&el.height>0)return true;
  var kids=[].slice.call(el.children).concat(el.shadowRoot?[].slice.call(el.shadowRoot.children):[]);
  for(var k=0;k<kids.length;k++){if(drawn(kids[k]))return true;} return false;}
(function check(){ var n=0; document.querySelectorAll('.plot').forEach(function(p){if(drawn(p))n++;});
  st.dataset.rendered=n; if(n<Number(st.dataset.expected)&&tries++<300)setTimeout(check,50);})();
})();
"""
