"""Runs: every saved profile, sweep, model run and map. Filter them, compare, re-run a saved spec
on this device, delete, and export them (CSV, JSON, or a self-contained HTML report)."""
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from attn import variants
from attn.report import html_report
from attn.regimes import MODES
from attn.runs import KINDS, RunStoreError
from attn.spec import AttentionSpec
from ui import format as fmt
from ui import follow, results
from ui.errors import shown_as_error
from ui.state import sync_url, url_choice, url_names, url_value

ALL = "all"
LIST_LIMIT = 500
SWEEP_BUDGET_S = 0.2
RERUN = "rn_rerun_jobs"  # the re-runs of saved runs, under this key of the session (ui.follow)

st.title(":material/storage: Runs")
st.caption("Every profile, sweep, model run and map saved on this machine (and imported from others), newest "
           "first, with the regime "
           "it measured (mode: forward, train or decode; runs saved before the regimes are forward). "
           "The store is one SQLite file under ~/.attn (the ATTN_HOME variable moves it); "
           "`python -m attn runs list|show|export` reads the same file.")
store = results.run_store()

flash = st.session_state.pop("rn_flash", None)
if flash:
    st.success(flash)


def _import_upload() -> None:
    """Another machine's runs.sqlite, merged into this store: written to a temporary folder under its
    own name and read there read-only by the same function as `attn runs import`."""
    with st.expander("Import another machine's runs", icon=":material/upload:",
                     expanded=store.count() == 0):
        st.caption("Merge the run store of another machine (its `runs.sqlite`; copy it with "
                   "`sqlite3 ~/.attn/runs.sqlite \".backup other.sqlite\"`, or while attn is closed there, so "
                   "its newest runs are in the file). Runs already here are skipped, so importing a file twice "
                   "adds nothing; each imported run keeps its device and remembers where it came from. "
                   "`python -m attn runs import FILE` does the same from a shell.")
        upload = st.file_uploader("run store", type=["sqlite", "sqlite3", "db"], key="rn_upload")
        if upload is None:
            return
        source = st.text_input("source name", value=Path(upload.name).stem, key="rn_source",
                               help="the name the imported runs are kept under: the machine's, say")
        if not st.button("Import", key="rn_import", icon=":material/merge:"):
            return
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / (Path(upload.name).name or "upload.sqlite")
            path.write_bytes(upload.getvalue())
            try:
                report = store.import_file(path, source=source)
            except RunStoreError as err:
                st.error(f"Nothing was imported: {err}")
                return
        st.session_state["rn_flash"] = report.summary()
        st.rerun()


_import_upload()
if store.count() == 0:
    st.info("No runs saved yet. Press :material/play_arrow: **Profile** in the Playground or "
            ":material/play_arrow: **Run sweep** on the Scaling page (both save what they measure), or "
            "from a shell: `python -m attn profile --variant sdpa --seq 1024 --save`.")
    st.stop()


def _choice(label: str, options: list[str], url_name: str, key: str, col) -> str:
    return col.selectbox(label, options, index=options.index(url_choice(url_name, ALL, options)), key=key)


everything = store.list(limit=LIST_LIMIT)
device_names = sorted({s.device for s in everything if s.device})
c1, c0, c2, c3, c4 = st.columns([1, 1, 1, 1.4, 2])
kind = _choice("kind", [ALL, *KINDS], "kind", "rn_kind", c1)
mode = _choice("mode", [ALL, *MODES], "mode", "rn_mode", c0)
variant = _choice("variant", [ALL, *variants.names()], "variant", "rn_variant", c2)
device = _choice("device", [ALL, "cpu", "cuda", *device_names], "device", "rn_device", c3)
search = c4.text_input("search", value=url_value("q", ""), key="rn_search",
                       placeholder="label, tag, spec text (S1024, float16) or a run id")

summaries = store.list(kind=None if kind == ALL else kind, mode=None if mode == ALL else mode,
                       variant=None if variant == ALL else variant,
                       device=None if device == ALL else device, search=search.strip() or None,
                       limit=LIST_LIMIT)
table = pd.DataFrame([{
    "id": s.id, "kind": s.kind, "mode": s.mode, "variant": s.variant, "spec": s.spec_short, "latency": fmt.ms(s.latency_ms),
    "peak memory": fmt.nbytes(s.peak_bytes), "achieved FLOP/s": fmt.si(s.achieved_tflops and s.achieved_tflops * 1e12),
    "points": s.points, "maps": "✓" if s.has_maps else "", "label": s.label, "tags": ", ".join(s.tags),
    "device": s.device, "from": s.source or "here", "when (UTC)": s.created_at[:19].replace("T", " "),
} for s in summaries])
st.caption(f"{len(summaries)} of {len(everything)}{'+' if len(everything) == LIST_LIMIT else ''} runs "
           "match. Latency is the median of a profile (train: the forward + backward step; decode: one "
           "step); a sweep's row counts its points.")
if summaries:
    st.dataframe(table, hide_index=True, width="stretch", height=min(420, 38 + 35 * len(table)))
else:
    st.info("No run matches these filters.")

labels = {s.id: f"#{s.id} {s.kind} · {s.mode} · {s.variant or '—'} · {s.spec_short}" for s in everything}
if "rn_select_next" in st.session_state:  # an action's new selection, set before the widget exists
    st.session_state["rn_selected"] = [i for i in st.session_state.pop("rn_select_next") if i in labels]
previous = [i for i in st.session_state.get("rn_selected", []) if i in labels]
options = list(dict.fromkeys([s.id for s in summaries] + previous))
from_url = [int(x) for x in url_names("runs", [], [str(i) for i in labels])]
default = None if "rn_selected" in st.session_state else [i for i in from_url if i in options]
selected = st.multiselect("Selected runs", options, default=default,
                          format_func=lambda i: labels.get(i, f"#{i}"), key="rn_selected",
                          placeholder="choose runs to compare, re-run, delete or export")
sync_url(kind=kind if kind != ALL else None, mode=mode if mode != ALL else None, variant=variant if variant != ALL else None,
         device=device if device != ALL else None, q=search.strip() or None, runs=selected)

if not selected:
    st.caption("Choose one or more runs above to compare, re-run, delete or export them.")
    st.stop()

kinds_of = {s.id: s.kind for s in everything}
profiles = [i for i in selected if kinds_of.get(i) == "profile"]


def rerun_job(run_id: int) -> follow.Job | None:
    """A job that measures a saved run's spec again on this device, in the run's own mode, or None
    (after saying why)."""
    run = store.get(run_id)
    here = results.device()
    spec = AttentionSpec.from_dict(run.spec).with_(device=here)
    if run.kind == "profile":
        reasons = results.cannot_run(spec, run.variant, run.mode)
        if reasons:
            st.warning(f"#{run_id} {run.variant} cannot run here: " + "; ".join(reasons))
            return None
        inputs = str(run.results.get("inputs") or "")
        if inputs and not inputs.startswith("random"):
            st.info(f"#{run_id} ran on {inputs}; the re-run uses seeded random inputs of its shape.")
        return results.profile_job(spec, run.variant, mode=run.mode, title=f"re-run of #{run_id}")
    if run.kind == "sweep":
        r = run.results
        return results.sweep_job(spec, r["variants"], r["xs"], r.get("axis", "seq"), SWEEP_BUDGET_S,
                                 f"re-run of sweep #{run_id}", run.mode)
    st.info(f"#{run_id} is a {run.kind} run: re-run it from the Models page or the command line.")
    return None


st.subheader(f"{len(selected)} selected")
a, b, c, d = st.columns(4)
if a.button("Compare", disabled=len(profiles) < 2, key="rn_compare", icon=":material/compare:",
            help="opens Compare with the selected profiles (two or more; Compare shows profiles)"):
    st.switch_page("views/compare.py", query_params={"runs": ",".join(map(str, profiles))})
rerunnable = [i for i in selected if kinds_of.get(i) in ("profile", "sweep")]
if b.button("Re-run on this device", disabled=not rerunnable, key="rn_rerun", icon=":material/replay:",
            help=f"measure the selected profiles and sweeps again here ({results.device()}), each in its "
                 "own mode, and save them as new runs; the saved ones stay"):
    batch = []
    for run_id in rerunnable:
        with shown_as_error(f"Re-running #{run_id}"):
            batch.append(rerun_job(run_id))
    with shown_as_error("The re-run"):
        follow.start(RERUN, *filter(None, batch))
if c.button("Delete…", key="rn_delete", icon=":material/delete:", help="asks before anything is deleted"):
    st.session_state["rn_confirm"] = list(selected)
d.download_button("HTML report", icon=":material/download:",
                  data=lambda ids=tuple(selected): html_report([store.get(i) for i in ids]),
                  file_name=f"attn-report-{'-'.join(map(str, selected[:6]))}.html", mime="text/html",
                  on_click="ignore", key="rn_html",
                  help="one self-contained file (plotly inlined, no network needed): maps beside "
                       "curves, numbers, cost tables and environment; made when you click")

made = results.keep_all(follow.follow(RERUN, "The re-run"))  # below the buttons; after a rerun too
if made:
    st.session_state["rn_flash"] = "Saved as " + ", ".join(f"#{i}" for i in made) + "."
    st.session_state["rn_select_next"] = made + selected
    st.rerun()

pending = st.session_state.get("rn_confirm")
if pending:
    st.warning(f"Delete {len(pending)} run(s): {', '.join(f'#{i}' for i in pending)}? This cannot be undone.")
    y, n, _ = st.columns([1, 1, 4])
    if y.button("Delete", type="primary", key="rn_delete_yes"):
        with shown_as_error("Deleting"):
            gone = store.delete(pending)
            st.session_state.pop("rn_confirm", None)
            st.session_state["rn_select_next"] = [i for i in selected if i not in pending]
            st.session_state["rn_flash"] = f"Deleted {gone} run(s)."
            st.rerun()
    if n.button("Cancel", key="rn_delete_no"):
        st.session_state.pop("rn_confirm", None)
        st.rerun()

e, f, g = st.columns([1, 1, 2])
with_maps = g.toggle("JSON with maps", value=False, key="rn_with_maps",
                     help="maps as nested lists: exact, but large")
with shown_as_error("Export"):
    name = f"attn-runs-{'-'.join(map(str, selected[:6]))}"
    e.download_button("CSV", store.export(selected, "csv"), file_name=f"{name}.csv", mime="text/csv",
                      icon=":material/download:", on_click="ignore", key="rn_csv",
                      help="a row per run and one per sweep point")
    f.download_button("JSON", store.export(selected, "json", include_maps=with_maps),
                      file_name=f"{name}.json", mime="application/json", icon=":material/download:",
                      on_click="ignore", key="rn_json")

if len(selected) == 1:
    with shown_as_error(f"Run #{selected[0]}"):
        run = store.get(selected[0])
        label = st.text_input("label", value=run.label, key=f"rn_label_{run.id}")
        if label != run.label and st.button("Save the label", key="rn_label_save"):
            store.update(run.id, label=label)
            st.session_state["rn_flash"] = f"#{run.id} relabelled."
            st.rerun()
        with st.expander(f"#{run.id} as saved", expanded=False):
            st.json(run.to_dict(include_maps=False), expanded=1)
