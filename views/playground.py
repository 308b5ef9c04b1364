"""Playground: one spec, several variants side by side: maps, mask, head stats, cost cards, in a
regime (forward, train, or one decode step against a KV cache)."""
import streamlit as st

from attn import variants
from attn.cost import USEFUL_FLOPS_NOTE, attention_cost
from attn.sources import InputSource
from ui.plot import show
from ui import maps, results
from ui.dimmed import dimmed
from ui.errors import shown_as_error
from ui.regimes import mode_selector, regime_cards
from ui.state import current_spec, regime_url, sync_url, url_choice, url_names, url_number, url_value

st.title(":material/science: Playground")
st.caption("One spec, several attention variants side by side. " + USEFUL_FLOPS_NOTE + ".")
mode = mode_selector("pg_mode")  # before the spec: a spec that is not valid must not hide it
spec = current_spec()
if spec is None:
    st.stop()

names = variants.names()
chosen = st.multiselect("Variants", names, default=url_names("variants", ["sdpa", "sliding_window"], names),
                        key="pg_variants")
c1, c2, c3, c4, c5 = st.columns(5)
head = c1.number_input("head", 0, spec.heads - 1, url_number("head", 0, 0, spec.heads - 1), key="pg_head")
size = c2.select_slider("map cells", [64, 128, 256, 512], value=url_choice("cells", 256, [64, 128, 256, 512]), key="pg_cells")
reduce = c3.radio("pooling", ["mean", "max"], horizontal=True, key="pg_reduce")
temperature = c4.select_slider("temperature", [0.25, 0.5, 1.0, 2.0, 4.0], value=1.0, key="pg_temp",
                               help="q is scaled by 1/temperature: low is sharp attention, high is flat")
log_scale = c5.toggle("log colour", value=True, key="pg_log")
asked_src = url_choice("src", "random", ["random", "model"])
with st.expander("Inputs: random, or q and k from a real model", expanded=asked_src == "model"):
    kind = st.radio("inputs", ["random", "model"], horizontal=True, key="pg_src",
                    index=["random", "model"].index(asked_src),
                    format_func={"random": "seeded random (temperature above)",
                                 "model": "captured from MiniLM (real attention)"}.get)
    text = layer = None
    if kind == "model":
        text = st.text_area("text", url_value("text", "The cost of attention grows with the square of "
                                              "the context, so every token must earn its place."), key="pg_text")
        layer = st.slider("layer", 0, 5, url_number("layer", 0, 0, 5), key="pg_layer")
        st.caption("The shape comes from the model (12 heads of 32, one row per token, not causal); the "
                   "sidebar's variant parameters, dtype and device still apply. On real inputs an "
                   "approximation's error says what it loses on real attention, not on noise."
                   + (" In decode the text is the cache and its last new_tokens tokens are the new "
                      "ones." if mode == "decode" else ""))
source = InputSource(kind=kind, temperature=float(temperature), text=text or "", layer=layer or 0)
sync_url(variants=chosen, head=head, cells=size, src=kind, text=text, layer=layer, **regime_url(mode))
with shown_as_error("The inputs"):
    spec = results.effective_spec(spec, source, mode)
if source.kind == "model" and spec.heads <= head:
    head = 0

if not chosen:
    st.info("Pick one or more variants above.")
    st.stop()

big = maps.is_big(spec)  # its maps go to the worker, on request; small ones are drawn here at once
wanted = {name: maps.MapArgs(spec, name, int(head), int(size), reduce, float(temperature), source, mode)
          for name in chosen}
drawable = maps.to_draw([wanted[n] for n in chosen if not results.cannot_run(spec, n, mode)])
if drawable and st.button("Draw the maps", key="pg_draw_maps", icon=":material/grid_on:",
                          help="this spec takes a while on this device: its maps are drawn in the worker, "
                               "with a bar and Cancel, and kept for this session"):
    if not maps.request(drawable):
        st.info("The maps asked for before are still being drawn: let them end, or cancel them, first.")
profile_now = st.button("Profile", type="primary", key="pg_profile", icon=":material/play_arrow:",
                        help="time, memory and error of each variant on this device (runs in the worker)")
if profile_now:
    results.profile_all(spec, chosen, source=source, mode=mode)
maps.follow_jobs()  # the map jobs' bar and Cancel, while the page serves
progress = st.container()  # the profiles' bar, above the cards and maps it will update
running = results.profiling()
with dimmed("pg_results", running):  # while profiling, what was drawn stays, dimmed
    columns = st.columns(min(len(chosen), 3))
    for i, name in enumerate(chosen):
        col = columns[i % len(columns)]
        var = variants.get(name)
        with col:
            st.subheader(var.title)
            st.caption(("exact" if var.exact else "approximation") + " · " + var.summary)
            reasons = results.cannot_run(spec, name, mode)
            if reasons:
                st.warning(("Cannot run this spec: " if mode == "forward" else f"Cannot run in {mode}: ")
                           + "; ".join(reasons))
                continue
            with shown_as_error(f"{name}: cost"):
                cost = attention_cost(spec, name, mode)
                regime_cards(cost, results.cached_profile(spec, name, source, mode), mode,
                             per_row=2 if len(columns) == 3 else 3)
            with shown_as_error(f"{name}: maps"):
                maps.draw(wanted[name], big, log_scale)
            with shown_as_error(f"{name}: curve"):
                show(results.small_curve(spec, name, mode), key=f"curve_{name}")
with progress:
    if results.follow_profiles():  # all measured: draw the cards with the new numbers
        st.rerun()
