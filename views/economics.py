"""Economics: attention's price. Dollars and joules per million tokens (a prefill, a training step,
a decode step beside its bandwidth floor), the longest context a memory budget holds, the
quality/cost frontier, and what GQA/MQA sharing saves."""
from dataclasses import asdict

import pandas as pd
import streamlit as st

from attn import charts, economics, regime_costs
from ui import format as fmt
from ui import calibration, follow, regime_economics, results
from ui.devices import side_by_side as devices_side_by_side
from ui.errors import shown_as_error
from ui.plot import show
from ui.state import current_spec, sync_url, url_number

QUICK_VARIANTS = ["sdpa", "sliding_window", "linear", "performer", "topk"]
RUN_LIMIT = 300
QUICK_SWEEP = "ec_quick_sweep"  # the quick sweep, under this key of the session (ui.follow)

st.title(":material/payments: Economics")
st.caption("What attention costs in money, energy and memory, worked out from the profiles and sweeps "
           "saved on this machine, in each regime they measured: a forward call (a prefill), a training step, "
           "a decode step. Token costs are for the attention core alone, as measured; runs saved before the "
           "regimes are forward.")
info = results.device_info()

c1, c2, c3 = st.columns(3)
gpu_price = c1.number_input("GPU price ($ per hour)", 0.0, 10_000.0,
                            url_number("gpu_price", economics.DEFAULT_GPU_PRICE_PER_HOUR, 0.0, 10_000.0), step=0.25,
                            key="ec_gpu_price", help="what one GPU costs you per hour; GPU runs pay this")
c1.caption(economics.GPU_PRICE_NOTE)
cpu_price = c2.number_input("CPU price ($ per hour)", 0.0, 10_000.0,
                            url_number("cpu_price", economics.DEFAULT_CPU_PRICE_PER_HOUR, 0.0, 10_000.0), step=0.05,
                            key="ec_cpu_price", help="what the machine of a CPU run costs per hour")
c2.caption(economics.CPU_PRICE_NOTE)
budget_gib = c3.number_input("memory budget (GiB)", 0.1, 100_000.0,
                             url_number("budget_gib", float(round(info["total_bytes"] / 2**30, 1)), 0.1, 100_000.0),
                             step=1.0, key="ec_budget",
                             help="for the longest context that fits and the KV cache")
c3.caption(f"Default: this machine's {'GPU' if info['gpu'] else 'RAM'} total "
           f"({fmt.nbytes(info['total_bytes'])}). Enter the memory of the device you price.")
budget_bytes = int(budget_gib * 2**30)

store = results.run_store()
summaries = store.list(kind="profile", limit=RUN_LIMIT) + store.list(kind="sweep", limit=RUN_LIMIT // 4)
saved = [store.get(s.id) for s in summaries]
measured = economics.measurements(saved)  # forward runs only
decode_costs = regime_costs.decode_costs(saved, gpu_price, cpu_price)
train_costs = regime_costs.train_costs(saved, gpu_price, cpu_price)


def quick_sweep() -> None:
    """A short sweep of a few variants, in the worker, saved to the store like the Scaling page's."""
    spec = current_spec()
    if spec is None:
        st.error("The spec in the sidebar is not valid; fix it first.")
        return
    demo = results.demo_sweep(info["gpu"])
    xs = [2**e for e in range(demo["lo"], demo["hi"] + 1)]
    follow.start(QUICK_SWEEP, results.sweep_job(spec, QUICK_VARIANTS, xs, "seq", 0.1,
                                                "quick sweep for Economics"))


# every device with a priced run of any regime, the one with most first
devices = pd.Series([m.device for m in measured] + [c.device for c in decode_costs + train_costs]).value_counts()
device = None
c1, c2 = st.columns(2)
if len(devices):
    device = c1.selectbox("device", list(devices.index), key="ec_device",
                          help="numbers from different devices are never mixed on one chart")
mine = [m for m in measured if m.device == device]
if not mine:
    where = "yet" if device is None else f"of the forward regime on {device}"
    st.info(f"No saved profiles or sweeps {where}, so no prefill to price. Make some: :material/play_arrow: "
            "**Profile** in the Playground, :material/play_arrow: **Run sweep** on the Scaling page (both "
            "save their runs), or from a shell "
            "`python -m attn sweep --variants sdpa,linear --seq 256,512,1024 --save`. Or run a quick "
            f"sweep of {', '.join(QUICK_VARIANTS)} here, with the sidebar's spec (a minute or two on a CPU).")
    if st.button("Quick sweep", type="primary", key="ec_quick", icon=":material/play_arrow:"):
        with shown_as_error("The quick sweep"):
            quick_sweep()
else:
    shapes = pd.Series([m.shape for m in mine]).value_counts()
    shape = c2.selectbox("shape (batch, heads, head_dim, dtype)", list(shapes.index), key="ec_shape",
                         help="one curve per variant needs the same shape at every length")
    points = economics.newest_per_point(m for m in mine if m.shape == shape)

    # -- $ and J per million tokens ------------------------------------------------------------
    st.subheader("Prefill: per million tokens")
    costs = economics.token_costs(points, gpu_price, cpu_price)
    price = costs[0].price_per_hour if costs else 0.0
    st.caption(f"$/Mtok = price per second × latency ÷ (batch × seq) × 10⁶, at ${price:.2f}/h. "
               "J/Mtok = energy per call ÷ (batch × seq) × 10⁶.")
    if costs:
        usd = pd.DataFrame([{"seq": c.seq, "variant": c.variant, "v": f"${c.usd_per_mtok:.3g}"} for c in costs])
        joules = pd.DataFrame([{"seq": c.seq, "variant": c.variant,
                                "v": "—" if c.joules_per_mtok is None else f"{c.joules_per_mtok:.3g} J"}
                               for c in costs])
        left, right = st.columns(2)
        left.markdown("**$ per million tokens** (rows: sequence length)")
        left.dataframe(usd.pivot(index="seq", columns="variant", values="v").fillna(""), width="stretch")
        right.markdown("**J per million tokens**")
        right.dataframe(joules.pivot(index="seq", columns="variant", values="v").fillna(""), width="stretch")
        with st.expander("every point, with its run"):
            st.dataframe(pd.DataFrame([{
                "variant": c.variant, "seq": c.seq, "tokens per call": c.tokens, "latency": fmt.ms(c.latency_ms),
                "$ per Mtok": f"${c.usd_per_mtok:.4g}",
                "J per Mtok": "—" if c.joules_per_mtok is None else f"{c.joules_per_mtok:.4g}",
                "run": f"#{c.run_id}"} for c in costs]), hide_index=True, width="stretch")
        notes = sorted({c.energy_note for c in costs if c.energy_note})
        if notes:
            st.caption("J/Mtok —: " + "; ".join(notes) + ".")
        rows = [asdict(c) for c in costs]
        energy = any(c.joules_per_mtok is not None for c in costs)
        left, right = st.columns(2) if energy else (st.container(), None)
        with left:
            show(charts.per_token_curve(rows, "usd_per_mtok", "$ per million tokens",
                                        title="dollars per million tokens"), key="ec_usd")
        if energy:
            with right:
                show(charts.per_token_curve(rows, "joules_per_mtok", "J per million tokens",
                                            title="joules per million tokens"), key="ec_joules")
    else:
        st.caption("No point of this shape ran to the end.")

    # -- the longest context -------------------------------------------------------------------
    st.subheader("Longest context in the budget")
    walls = {}
    for run in saved:
        if run.kind == "sweep" and run.device == device and economics.shape_of(run.spec) == shape:
            for w in run.results.get("walls") or []:
                walls.setdefault(w["variant"], w)  # newest sweep first
    fits = []
    for name in sorted({m.variant for m in points}):
        with shown_as_error(f"{name}: the wall"):
            fits.append(economics.longest_context([m for m in points if m.variant == name], budget_bytes,
                                                  walls.get(name)))
    if fits:
        left, right = st.columns([2, 3])
        with left:
            show(charts.context_fit_bars([asdict(f) for f in fits], f"{budget_gib:g} GiB"), key="ec_fits")
        right.dataframe(pd.DataFrame([{
            "variant": f.variant, "longest seq": "—" if f.max_seq is None else f"{f.max_seq:,}",
            "how": "projected" if f.projected else "measured", "why": f.note} for f in fits]),
            hide_index=True, width="stretch")
        right.caption("Footprint = the inputs (q, k, v) + the call's measured peak. Measured: the longest "
                      "measured length that fits. Projected: past the measured lengths, the peak's "
                      "fitted power of the length plus the inputs, known exactly (hatched bars).")

    # -- quality against cost ------------------------------------------------------------------
    st.subheader("Quality against cost")
    lengths = sorted({m.seq for m in points if m.approx_error is not None})
    if lengths:
        seq = st.select_slider("at sequence length", lengths, value=lengths[-1], key="ec_seq")
        by_latency = economics.frontier_at(points, seq, "latency_ms")
        by_memory = economics.frontier_at(points, seq, "peak_bytes")
        left, right = st.columns(2)
        with left:
            show(charts.frontier_chart([asdict(p) for p in by_latency], "latency (ms, median)",
                                       title=f"approx error against latency at {seq:,}"), key="ec_front_lat")
        with right:
            show(charts.frontier_chart([asdict(p) for p in by_memory], "peak memory (bytes)",
                                       title=f"approx error against memory at {seq:,}"), key="ec_front_mem")
        beaten = [f"{p.label} (by {p.dominated_by} on {what})" for what, front in
                  (("latency", by_latency), ("memory", by_memory)) for p in front if p.dominated]
        st.caption("Grey: dominated, another variant is at least as accurate and at least as cheap, and "
                   "better on one of the two. Exact variants sit at float rounding error (about 1e-7). "
                   + ("Dominated: " + "; ".join(beaten) + "." if beaten else "No variant is dominated."))
    else:
        st.caption("No approximation error was saved with these runs.")

quick = follow.follow(QUICK_SWEEP, "The quick sweep")  # below its button; after a rerun too
results.keep_all(quick)
if quick is not None and quick.ok:
    st.rerun()  # priced from the runs it saved

regime_economics.train_section(train_costs, device, current_spec())
regime_economics.decode_section(decode_costs, device, current_spec())

# -- devices side by side --------------------------------------------------------------------
st.subheader("Devices side by side")
devices_side_by_side(saved, "ec_dev", gpu_price, cpu_price, priced=True)

# -- GQA / MQA -------------------------------------------------------------------------------
st.subheader("What sharing keys and values saves (GQA / MQA)")
spec = current_spec()
if spec is None:
    st.caption("Fix the spec in the sidebar to see the KV cache.")
    st.stop()
cal = calibration.cached(results.device()) if info["gpu"] else None
c1, c2, c3, c4 = st.columns(4)
layers = c1.number_input("layers", 1, 1000, url_number("layers", 32, 1, 1000), key="ec_layers")
batch = c2.number_input("batch (sequences)", 1, 100_000, url_number("batch_kv", 8, 1, 100_000), key="ec_batch")
context = c3.number_input("context (tokens)", 1, 1 << 24, url_number("context", 8192, 1, 1 << 24), step=1024, key="ec_context")
bandwidth = c4.number_input("memory bandwidth (GB/s)", 1.0, 100_000.0,
                            float(cal["bandwidth_gbps"]) if cal else economics.DEFAULT_BANDWIDTH_GBPS,
                            key="ec_bandwidth")
c4.caption(f"Measured on this GPU ({cal['measured_at']})." if cal else economics.BANDWIDTH_NOTE)
sync_url(gpu_price=gpu_price, cpu_price=cpu_price, budget_gib=budget_gib, layers=layers, batch_kv=batch,
         context=context)
with shown_as_error("The KV cache"):
    shares = economics.kv_sharing(spec, int(batch), int(context), int(layers), float(bandwidth), gpu_price,
                                  memory_bytes=budget_bytes)
    st.caption(f"The sidebar's {spec.heads} query heads of {spec.head_dim} dims in {spec.dtype}, at "
               f"${gpu_price:.2f}/h. " + economics.DECODE_MODEL_NOTE)
    st.dataframe(pd.DataFrame([{
        "sharing": k.name, "KV bytes per token": fmt.nbytes(k.bytes_per_token),
        f"cache at {batch} × {context:,}": fmt.nbytes(k.cache_bytes),
        "fits the budget": "yes" if k.fits else "no",
        "read per step": fmt.ms(k.read_s_per_step * 1e3), "$ per Mtok (decode)": f"${k.usd_per_mtok:.4g}",
        "saved per token": fmt.nbytes(k.saved_bytes_per_token),
        "saved $ per Mtok": f"${k.saved_usd_per_mtok:.4g}"} for k in shares]),
        hide_index=True, width="stretch")
    left, right = st.columns(2)
    names = [k.name.split(" (")[0] + f" {k.kv_heads}" for k in shares]
    with left:
        show(charts.bars(names, [k.bytes_per_token for k in shares], "KV cache per token (all layers)",
                         "bytes per token"), key="ec_kv_bytes")
    with right:
        show(charts.bars(names, [k.usd_per_mtok for k in shares], "decode $ per million tokens (memory-bound)",
                         "$ per Mtok"), key="ec_kv_usd")
