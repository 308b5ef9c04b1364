"""Scaling: a sweep over sequence lengths (or batch, heads, head_dim) whose curves grow point by
point while it runs, with fitted exponents, crossovers and the memory wall."""
import streamlit as st

from attn import charts, variants
from attn.cost import USEFUL_FLOPS_NOTE
from attn.sweep import AXES, Point, analyse
from ui.plot import show
from ui import format as fmt
from ui import follow, results
from ui.errors import shown_as_error
from ui.state import current_spec, sync_url, url_list, url_value

SWEEP = "sc_sweep"  # the sweep, running or last finished, under this key of the session (ui.follow)

st.title(":material/show_chart: Scaling")
st.caption("How latency, memory and FLOPs grow with the sequence. Log-log axes: a slope of 2 is "
           "quadratic, 1 is linear. " + USEFUL_FLOPS_NOTE + ".")
spec = current_spec()
if spec is None:
    st.stop()

names = variants.names()
demo = st.session_state.pop("demo_sweep", None) or {}
if demo:  # the Overview's demo button: its choices win over what the widgets held
    st.session_state.update(sc_variants=demo["variants"], sc_lo=demo["lo"], sc_hi=demo["hi"])
chosen = st.multiselect("Variants", names, key="sc_variants",
                        default=demo.get("variants") or [v for v in url_list("variants", ["sdpa", "sliding_window", "linear"]) if v in names])
c1, c2, c3, c4 = st.columns(4)
axis = c1.selectbox("axis", AXES, index=AXES.index(url_value("axis", "seq")), key="sc_axis")
lo_exp = c2.number_input("from 2^", 0, 24, demo.get("lo", url_value("lo", 8)), key="sc_lo")
hi_exp = c3.number_input("to 2^", 0, 24, demo.get("hi", url_value("hi", 12)), key="sc_hi")
budget = c4.number_input("seconds per point", 0.05, 5.0, 0.2, step=0.05, key="sc_budget")
xs = [2**e for e in range(int(lo_exp), int(hi_exp) + 1)]
sync_url(variants=chosen, axis=axis, lo=lo_exp, hi=hi_exp)
st.caption(f"{axis} ∈ {xs}; the rest of the spec comes from the sidebar. A variant stops at its first "
           "out-of-memory; the others go on.")

if hi_exp < lo_exp:
    st.error("'to' must be at least 'from'")
    st.stop()

start = st.button("Run sweep", type="primary", disabled=not chosen, key="sc_run",
                  icon=":material/play_arrow:") or demo.get("start", False)
if start:
    with shown_as_error("The sweep"):
        follow.start(SWEEP, results.sweep_job(spec, chosen, xs, axis, budget, f"{','.join(chosen)} over {axis}"))
        st.session_state.pop("sweep_result", None)


def _draw(points: list[dict], final: dict | None) -> None:
    pts = [p for p in points]
    names_seen = list(dict.fromkeys(p["variant"] for p in pts))
    if final:
        fits, crossings, walls = final["fits"], final["crossovers"], final["walls"]
    else:
        fit_objs, cross_objs = analyse([Point(**p) for p in pts], names_seen)
        fits = {n: {m: f.__dict__ for m, f in fs.items()} for n, fs in fit_objs.items()}
        crossings, walls = [c.__dict__ for c in cross_objs], []
    label = "sequence length" if axis == "seq" else axis
    tabs = st.tabs(["latency", "peak memory", "FLOPs"])
    for tab, metric in zip(tabs, ("latency_ms", "peak_bytes", "flops")):
        with tab:
            fig = charts.metric_curve(pts, metric, x_label=label, fits=fits, crossovers=crossings, walls=walls)
            event = show(fig, key=f"sweep_{metric}", on_select="rerun", selection_mode="points")
            sel = (event or {}).get("selection", {}).get("points", []) if event else []
            if sel and "customdata" in sel[0]:
                st.session_state["sweep_pick"] = sel[0]["customdata"]
    if walls:
        st.markdown("**Memory wall** (longest that fits): " + " · ".join(
            f"{w['variant']}: {w['x']:,}" + (" *(projected)*" if w["projected"] else "") if w["x"] else f"{w['variant']}: —"
            for w in walls))
    failed = [p for p in pts if p["status"] != "ok"]
    for p in failed:
        st.caption(f"{p['variant']} at {p['x']}: {p['status']} — {p['message']}")


@st.fragment(run_every=0.5)
def live() -> None:
    view = follow.follow(SWEEP, "The sweep", wait=False)  # a bar and Cancel while it runs
    final = st.session_state.get("sweep_result")
    if view is None and final is None:
        st.info("Choose variants and a range, then **Run sweep**.")
        return
    if view is not None and view.first and view.ok:
        final = st.session_state["sweep_result"] = view.result
        st.session_state["sweep_run_id"] = results.keep(view.tags[0], final)
    if view is not None and not view.ok:  # running, cancelled or failed: the points so far
        if view.cancelled:
            st.caption("The points measured before the cancel are shown.")
        _draw(view.partials(), None)
        return
    if final:
        _draw(final["points"], final)


live()

pick = st.session_state.get("sweep_pick")
final = st.session_state.get("sweep_result")
if pick and final:
    variant, x = pick
    point = next((p for p in final["points"] if p["variant"] == variant and p["x"] == x), None)
    if point and point["status"] == "ok":
        from attn.spec import AttentionSpec

        st.subheader(f"{variant} at {axis} {x}")
        c1, c2 = st.columns([3, 2])
        with c2:
            st.metric("latency (median)", fmt.ms(point["latency_ms"]))
            st.metric("peak memory", fmt.nbytes(point["peak_bytes"]))
            st.metric("approx error", fmt.ratio(point["approx_error"]))
        with c1, shown_as_error("The map"):
            pspec = AttentionSpec.from_dict(point["spec"])
            m = results.maps(pspec, variant, 0, 256, "mean", 1.0)
            show(charts.attention_heatmap(m["map"]["values"], m["map"]["q_edges"], m["map"]["k_edges"],
                                                     title=f"head 0, {variant}, {axis} {x}", log_scale=True),
                            key="sweep_pick_map")
elif final:
    st.caption("Click a point on a curve to see that run's attention map here.")
