"""Overview: what attn shows, this device and its measured roof, the latest runs, a demo."""
import pandas as pd
import streamlit as st

from attn import tasks
from attn.cost import USEFUL_FLOPS_NOTE
from ui import calibration, follow, results
from ui import selftest as selftest_view
from ui.state import set_mode

st.title(":material/flashlight_on: attn — the cost of attention, made visible")
if st.button("Tell the story: why long context costs what it does, in six live measurements",
             type="primary", icon=":material/auto_stories:", key="ov_story"):
    st.switch_page("views/story.py")
st.markdown(
    "Attention is the part of a transformer whose cost grows with the square of the context. "
    "attn runs attention variants and real models **on this machine** and shows what each one "
    "costs — FLOPs, memory, latency, energy — beside what it attends to, in the three regimes "
    "where attention is paid for: a forward call (a prefill), a training step (forward + "
    "backward) and a decode step against a KV cache.\n\n"
    "- **Story**: the case for attention economics in six chapters, each measured live here; a "
    "presenter mode, and the whole story as one HTML file to hand out.\n"
    "- **Playground**: one spec, several variants: maps, masks, head statistics, cost cards.\n"
    "- **Scaling**: sweeps over length with fitted exponents, crossovers and the memory wall.\n"
    "- **Roofline**: every run against the measured limits of this device.\n"
    "- **Live monitor**: GPU and CPU counters while work runs.\n"
    "- **Compare**: saved runs side by side.\n"
    "- **Runs**: every measurement kept, filtered, re-run, exported, or made into a report.\n"
    "- **Economics**: dollars and joules per million tokens, the longest context that fits, the "
    "quality/cost frontier, and what GQA/MQA sharing saves.\n"
    "- **Models**: a real transformers model (MiniLM, shipped offline) or a preset: every head's "
    "attention, head statistics, the cost of each layer, a decoder's time to first token and "
    "per-token decode, and the training step of its attention layers.\n"
    "- **Planner**: what-ifs on a real model: sliding windows or other attention in some layers, "
    "GQA/MQA conversion, the activation; cost and quality side by side, on a frontier.\n\n"
    f"Every FLOP count is a {USEFUL_FLOPS_NOTE}.")

info = results.device()
c1, c2 = st.columns(2)
with c1:
    st.subheader("This device")
    summary = results.device_info()
    st.markdown(f"**{summary['label']}**  \n" + ("GPU" if summary["gpu"] else "CPU only: no CUDA GPU is visible to torch"))
    cal = calibration.calibrate_button(info)
    if cal:
        st.caption(calibration.summary(cal))
with c2:
    st.subheader("Demo")
    demo = results.demo_sweep(summary["gpu"])
    st.markdown(f"A sweep of **{', '.join(demo['variants'])}** over sequence lengths "
                f"2^{demo['lo']}…2^{demo['hi']}, sized for this device.")
    if st.button("Run the demo sweep", type="primary", icon=":material/play_arrow:"):
        st.session_state["demo_sweep"] = {**demo, "start": True}
        set_mode("forward")  # the demo is a forward sweep; the sidebar reads the regime first
        st.switch_page("views/scaling.py")

st.subheader("Latest runs")
runs = results.run_store().list(limit=10)
if runs:
    st.dataframe(pd.DataFrame([{"id": r.id, "kind": r.kind, "variant": r.variant, "spec": r.spec_short,
                                "latency (ms)": r.latency_ms, "device": r.device, "when (UTC)": r.created_at[:19]}
                               for r in runs]), hide_index=True, width="stretch")
else:
    st.caption("No runs saved yet.")

st.subheader("Self-test")
st.markdown(
    "attn checks its own numbers on this device: every variant's output, gradients and decode step "
    "against float64, FLOPs and bytes against closed forms and torch's FLOP counter, the profiler's "
    "median against an independent timer, and sdpa auto's choice against each backend's own time "
    "(on a GPU also NVML energy and memory after an out-of-memory). Each check is passed, failed "
    "with the figure, or not possible here with the reason; the result is saved as a run "
    "(Runs page: export it to send when something fails). Same as `attn selftest`.")
quick = st.toggle("Quick (one shape per check, shorter timings)", value=True, key="ov_selftest_quick")
if st.button("Run the self-test", icon=":material/fact_check:", key="ov_selftest_run"):
    follow.start("ov_selftest", follow.job(tasks.selftest_task, "auto", quick, kind="selftest",
                                           title="self-test"))
view = follow.follow("ov_selftest", "Self-test")
if view is not None and view.ok:
    st.session_state["ov_selftest_result"] = view.result
    st.rerun()  # once more, so that Latest runs above lists the run just saved
shown = st.session_state.get("ov_selftest_result")
if shown is None:
    latest = results.run_store().list(kind="selftest", limit=1)
    if latest:
        shown = results.run_store().get(latest[0].id).results
        st.caption(f"The last self-test saved on this machine ({latest[0].created_at[:19]} UTC):")
if shown is not None:
    selftest_view.show(shown)
else:
    st.caption("No self-test has run here yet.")
