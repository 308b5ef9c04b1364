"""Scaling: a sweep over sequence lengths (or batch, heads, head_dim; in decode the context) whose
curves grow point by point while it runs, with fitted exponents, crossovers and the memory wall,
in a regime: train adds what the forward saves for the backward, decode the bandwidth floor."""
import streamlit as st

from attn import charts, cluster, tasks, variants
from attn.cost import USEFUL_FLOPS_NOTE
from attn.sweep import Point, analyse
from ui.plot import show
from ui import format as fmt
from ui import follow, maps, results
from ui.dimmed import dimmed
from ui.errors import shown_as_error
from ui.regimes import mode_selector
from ui.state import current_spec, regime_url, sync_url, url_choice, url_names, url_number

SWEEP = "sc_sweep"  # the sweep, running or last finished, under this key of the session (ui.follow)
CLUSTER = "sc_cluster"  # joining the Ray cluster (in the worker, which then drives the sweep's tasks)
# the axes a sweep can take in each regime: a decode step's length is its context
AXES = {"forward": ["seq", "batch", "heads", "head_dim"], "train": ["seq", "batch", "heads", "head_dim"],
        "decode": ["context", "batch", "heads", "head_dim"]}
# the tabs of each regime: (title, metric); decode's latency tab carries the bandwidth floor
TABS = {
    "forward": [("latency", "latency_ms"), ("peak memory", "peak_bytes"), ("FLOPs", "flops")],
    "train": [("step latency", "latency_ms"), ("saved memory", "saved_bytes"),
              ("peak memory", "peak_bytes"), ("FLOPs", "flops")],
    "decode": [("latency and floor", "latency_ms"), ("bytes read", "bytes_read"),
               ("peak memory", "peak_bytes"), ("FLOPs", "flops")],
}
LABELS = {"seq": "sequence length", "context": "context (cached keys)"}

MAPS_KEY = "sc_maps"  # the follow key of this page's map job (a picked point's map)

st.title(":material/show_chart: Scaling")
st.caption("How latency, memory and FLOPs grow with the sequence (in decode: the context). Log-log axes: a slope of 2 is "
           "quadratic, 1 is linear. " + USEFUL_FLOPS_NOTE + ".")
demo = st.session_state.pop("demo_sweep", None) or {}
mode = mode_selector("sc_mode")
st.caption({
    "forward": "One call over the whole sequence.",
    "train": "Forward and backward: **saved memory** is what the forward keeps for the backward. "
             "Eager attention (dense) keeps the S×S weights, a wall that grows as S²; a fused kernel "
             "(sdpa on flash or efficient) keeps its output and a log-sum-exp per row, a line. On "
             "`backend=auto` sdpa runs the fastest backend at each length, and math keeps the "
             "weights too.",
    "decode": "One step against a cache of `context` keys (`new_tokens` from the sidebar). A step "
              "is memory-bound: the dashed line is its **bandwidth floor**, the bytes it reads over "
              "this device's calibrated copy bandwidth.",
}[mode])
spec = current_spec()
if spec is None:
    st.stop()

names = variants.names()
if demo:  # the Overview's demo button: its choices win over what the widgets held
    st.session_state.update(sc_variants=demo["variants"], sc_lo=demo["lo"], sc_hi=demo["hi"])
chosen = st.multiselect("Variants", names, key="sc_variants",
                        default=demo.get("variants") or url_names("variants", ["sdpa", "sliding_window", "linear"], names))
c1, c2, c3, c4 = st.columns(4)
axes = AXES[mode]
axis = c1.selectbox("axis", axes, index=axes.index(url_choice("axis", axes[0], axes)),
                    key=f"sc_axis_{mode}")  # one widget a regime: their choices differ
lo_exp = c2.number_input("from 2^", 0, 24, demo.get("lo", url_number("lo", 8, 0, 24)), key="sc_lo")
hi_exp = c3.number_input("to 2^", 0, 24, demo.get("hi", url_number("hi", 12, 0, 24)), key="sc_hi")
budget = c4.number_input("seconds per point", 0.05, 5.0, 0.2, step=0.05, key="sc_budget")
xs = [2**e for e in range(int(lo_exp), int(hi_exp) + 1)]
sync_url(variants=chosen, axis=axis, lo=lo_exp, hi=hi_exp, **regime_url(mode))
st.caption(f"{axis} ∈ {xs}; the rest of the spec comes from the sidebar. A variant stops at its first "
           "out-of-memory; the others go on.")

if hi_exp < lo_exp:
    st.error("'to' must be at least 'from'")
    st.stop()
if axis == "context" and xs[0] < spec.seq:
    st.error(f"The context must hold the {spec.seq} new tokens: start the sweep at 2^"
             f"{(spec.seq - 1).bit_length()} or more, or lower new_tokens in the sidebar.")
    st.stop()
cannot = {n: variants.get(n).cannot[mode] for n in chosen if mode in variants.get(n).cannot}
for reason in cannot.values():
    st.warning(f"Not in this {mode} sweep: {reason}")
chosen = [n for n in chosen if n not in cannot]



@st.cache_data(ttl=30, show_spinner=False)
def _unreachable(address: str) -> str | None:
    return cluster.reachable(address)


def cluster_choice() -> str | None:
    """The Ray cluster's address when the user runs the sweep there, else None (here, in the worker).
    Offered only for a configured cluster (ATTN_RAY_ADDRESS or RAY_ADDRESS): the page never starts
    one, and joins it (in the worker) only when asked, to say what it holds."""
    address = cluster.known_address()
    if address is None:
        st.caption("Points run here, one after the other. To spread a sweep over a Ray cluster, start the app "
                   f"with `{cluster.ENV_ADDRESS}=host:port` (see the README, *Sweeps on a Ray cluster*).")
        return None
    why_not = _unreachable(address)
    on = st.toggle(f"Run on the Ray cluster at {address}", key="sc_ray", disabled=why_not is not None,
                   help="one Ray task a point, one GPU a task where the cluster has GPUs (else one CPU); "
                        "the points come back as they finish and are saved here, with the device of the node "
                        "that measured each")
    if why_not:
        st.caption(why_not)
        return None
    if not on:
        return None
    known = st.session_state.setdefault("sc_cluster_info", {})
    if address not in known:
        view = follow.follow(CLUSTER, "Joining the Ray cluster")  # one started on an earlier run
        if view is None:
            follow.start(CLUSTER, follow.job(tasks.cluster_task, address, kind="cluster", title=f"Ray at {address}"))
            view = follow.follow(CLUSTER, "Joining the Ray cluster")
        if view is not None:  # a failure was shown by follow, once; the toggle then runs the sweep here
            known[address] = view.result if view.ok else {}
    info = known.get(address)
    if info == {}:
        return None
    if info:
        st.caption(f"Ray {info['ray']} cluster at {info['address']}: {info['nodes']} node(s), {info['cpus']:g} CPUs, "
                   f"{info['gpus']:g} GPUs. Each point asks for "
                   + ("one GPU, so two timings never share one." if info["gpus"] >= 1 else
                      "one CPU (torch then runs on one thread a point: CPU timings are not those of this "
                      "machine's worker).") + " Points arrive as they finish.")
    return address


ray_address = cluster_choice()
start = st.button("Run sweep", type="primary", disabled=not chosen, key="sc_run",
                  icon=":material/play_arrow:") or demo.get("start", False)
if start:
    with shown_as_error("The sweep"):
        where = f" on Ray at {ray_address}" if ray_address else ""
        follow.start(SWEEP, results.sweep_job(spec, chosen, xs, axis, budget,
                                              f"{','.join(chosen)} over {axis} ({mode}){where}", mode, ray_address))
        # the last sweep stays on the page, dimmed, until this one ends (ui.dimmed)
        st.session_state["sweep_previous"] = st.session_state.pop("sweep_result", None)


def _draw(points: list[dict], final: dict | None) -> None:
    pts = [p for p in points]
    names_seen = list(dict.fromkeys(p["variant"] for p in pts))
    if final:
        fits, crossings, walls = final["fits"], final["crossovers"], final["walls"]
    else:
        fit_objs, cross_objs = analyse([Point(**p) for p in pts], names_seen)
        fits = {n: {m: f.__dict__ for m, f in fs.items()} for n, fs in fit_objs.items()}
        crossings, walls = [c.__dict__ for c in cross_objs], []
    # a sweep is drawn in the regime it ran in (its points say which), whatever the selector says now
    shown = next((p.get("mode") for p in pts), None) or (final or {}).get("mode") or mode
    swept = (final or {}).get("axis", axis)
    label = LABELS.get(swept, swept)
    tabs = st.tabs([title for title, _ in TABS[shown]])
    for tab, (_, metric) in zip(tabs, TABS[shown]):
        with tab:
            if shown == "decode" and metric == "latency_ms":
                fig = charts.latency_with_floor(pts, x_label=label, fits=fits, crossovers=crossings)
            else:
                fig = charts.metric_curve(pts, metric, x_label=label, fits=fits, crossovers=crossings,
                                          walls=walls)
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
    previous = st.session_state.get("sweep_previous")
    if view is not None and not view.finished and previous:
        with dimmed("sc_previous", True):
            st.caption("The previous sweep, dimmed until this one ends.")
            _draw(previous["points"], previous)
        return
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

        swept, ran = final.get("axis", axis), point.get("mode") or "forward"
        st.subheader(f"{variant} at {swept} {x}" + ("" if ran == "forward" else f" ({ran})"))
        c1, c2 = st.columns([3, 2])
        with c2:
            st.metric("latency (median)", fmt.ms(point["latency_ms"]))
            if ran == "train":
                st.metric("forward · backward", f"{fmt.ms(point['forward_ms'])} · {fmt.ms(point['backward_ms'])}")
                st.metric("saved memory", fmt.nbytes(point["saved_bytes"]))
            if ran == "decode":
                st.metric("bandwidth floor", fmt.ms(point["floor_ms"]),
                          help=f"{fmt.nbytes(point['bytes_read'])} read at the calibrated copy bandwidth")
            st.metric("peak memory", fmt.nbytes(point["peak_bytes"]))
            st.metric("approx error", fmt.ratio(point["approx_error"]))
        with c1, shown_as_error("The map"):
            pspec = AttentionSpec.from_dict(point["spec"])
            args = maps.MapArgs(pspec, variant, 0, 256, "mean", 1.0, None, ran)
            if maps.to_draw([args]) and st.button("Draw the map", key="sc_draw_map", icon=":material/grid_on:",
                                                help="this point's map takes a while on this device: it is "
                                                     "drawn in the worker, with a Cancel button"):
                if not maps.request([args], key=MAPS_KEY):
                    st.info("The map asked for before is still being drawn: let it end, or cancel it, first.")
            maps.follow_jobs(MAPS_KEY)
            m = maps.page_maps(args, MAPS_KEY)  # None: its place says why, or what to press
            if m is not None:
                values, q_edges, k_edges = m["map"]["values"], m["map"]["q_edges"], m["map"]["k_edges"]
                title = f"head 0, {variant}, {swept} {x}"
                fig = (charts.cache_strip(values, q_edges, k_edges, pspec.kv_seq - pspec.seq, title=title,
                                          log_scale=True) if ran == "decode"
                       else charts.attention_heatmap(values, q_edges, k_edges, title=title, log_scale=True))
                show(fig, key="sweep_pick_map")
elif final:
    st.caption("Click a point on a curve to see that run's attention map here.")
