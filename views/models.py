"""Models: a real transformer's attention head by head, and what each of its layers costs."""
import pandas as pd
import streamlit as st

from attn import charts
from attn.models import (CONVENTION, DEFAULT_MODEL, KAPLAN_CONVENTION, PRESETS, decode_unsupported,
                         kaplan_convention_flops_per_token, kaplan_flops_per_token, kv_cache_curve, layer_costs,
                         measured_points, model_choices, model_flops, model_shape)
from attn.models.serving import cache_summary
from attn.models.report import KV_CONTEXTS
from attn.models.sources import MINILM_DESCRIPTION
from ui import format as fmt
from ui import model_dirs
from ui import models as um
from ui import results
from ui.errors import shown_as_error
from ui.plot import show
from ui.state import sync_url, url_number, url_value

LOCAL = "local directory…"
DEFAULT_TEXT = ("The animal didn't cross the street because it was too tired. "
                "Attention lets every word look at every other word, and that is what it costs.")


def _md(text: str) -> str:
    """Formulas as written: a * must not start italics."""
    return text.replace("*", "\\*").replace("_", "\\_")


def _measured_points_shown(result: dict, key: str) -> None:
    """A line for the lengths left out and for each point without numbers, saying why."""
    if result["note"]:
        st.caption(result["note"] + ".")
    for point in result["points"]:
        status = point["status"]
        if status == "ok":
            continue
        line = f"{key} {point[key]:,}: {status}"
        if status.startswith("does not fit"):
            st.warning(line)
        elif status.startswith("failed"):
            st.error(line)
        else:
            st.caption(line)


st.title(":material/neurology: Models")
st.caption("A real transformer, offline: every head's attention for your text, and the cost of each "
           "layer, counted and measured. Click any cell of a grid to open that head.")

# -- the model and the text ---------------------------------------------------------------------
choices = [*model_choices(), LOCAL]
wanted = url_value("model", DEFAULT_MODEL)
if "md_model" not in st.session_state:
    st.session_state["md_model"] = wanted if wanted in choices else LOCAL
    st.session_state["md_dir"] = "" if wanted in choices else wanted
    st.session_state["md_text"] = url_value("text", DEFAULT_TEXT)
    st.session_state["md_tokens"] = url_number("tokens", 128, 1, 8192)
# the open head from a deep link: read before sync_url rewrites the URL
for key, name in ((um.LAYER, "layer"), (um.HEAD, "head")):
    if key not in st.session_state:
        st.session_state[key] = url_value(name, 0)
c1, c2, c3 = st.columns([2, 1, 1])
choice = c1.selectbox("Model", choices, key="md_model", format_func=lambda c: c if c == LOCAL else (
    f"{c} · {PRESETS.get(c, MINILM_DESCRIPTION)}"))
max_tokens = int(c2.number_input("max tokens", 1, 8192, step=64, key="md_tokens",
                                 help=f"up to {um.LONG_INPUT} tokens the maps are the exact weights; "
                                      "longer texts are pooled from q and k"))
log_scale = c3.toggle("log colour", value=True, key="md_log", help="colour by log10 of the weight: "
                      "small weights stay visible next to a sink")
source = choice
if choice == LOCAL:
    source = c1.text_input("Model directory", key="md_dir",
                           placeholder="a directory with config.json and *.safetensors weights").strip()
text = st.text_area("Text", key="md_text", height=90)
sync_url(model=source if source else None, tokens=max_tokens,
         text=text if len(text) <= 500 else None, layer=st.session_state.get(um.LAYER),
         head=st.session_state.get(um.HEAD))
if choice == LOCAL:
    st.caption(model_dirs.caption())
if choice == LOCAL and not source:
    st.info("Name a local model directory (config.json and *.safetensors; attn never loads pickles "
            "nor runs remote code).")
    st.stop()
refused = model_dirs.refusal(source) if choice == LOCAL else None
if refused:  # before anything looks at the path: a link must not probe the server's disk
    st.error(refused)
    st.stop()

loaded = data = None
with shown_as_error(f"model {source}"), st.spinner(f"loading {source} (once per process)"):
    loaded = um.model(source)
if loaded is None:
    st.stop()
with shown_as_error("attention"), st.spinner("running the model"):
    data = um.model_views(source, text, max_tokens)
if data is None:
    st.stop()
st.caption(f"**{loaded.name}**: {loaded.source} · {loaded.num_parameters:,} parameters · {loaded.kind} · "
           f"tokenizer: {loaded.tokenizer_note} · **{data['seq_len']} tokens**")

maps = data["maps"]
layers, heads = maps.shape[:2]
for key, n in ((um.LAYER, layers), (um.HEAD, heads)):
    if not 0 <= st.session_state[key] < n:  # another model: keep the open head in range
        st.session_state[key] = 0
layer, head = st.session_state[um.LAYER], st.session_state[um.HEAD]
tokens = data["tokens"]
labels = um.token_labels(tokens) if data["exact"] else None

# -- views --------------------------------------------------------------------------------------
st.subheader("Model view")
cells = maps.shape[-1]
st.caption(f"{layers} layers × {heads} heads, each map {cells}×{cells} cells "
           f"({'one per token pair' if cells == data['seq_len'] else 'mean-pooled: each cell a run of queries × keys'}); "
           f"{data['route']}. Click a map to open it below.")
show(charts.model_view(maps, title=f"{loaded.name}: every head", log_scale=log_scale, selected=(layer, head),
                       notes=um.head_notes(data["stats"])),
     key="md_mosaic", **um.clickable("md_mosaic"))

st.subheader("Head view and rollout")
a, b, _ = st.columns([1, 1, 4])
a.selectbox("layer", list(range(layers)), key=um.LAYER)
b.selectbox("head", list(range(heads)), key=um.HEAD)
left, right = st.columns(2)
with left:
    with shown_as_error("head view"):
        hv = um.head_view(source, text, max_tokens, layer, head)
        show(charts.attention_heatmap(
            hv["values"], hv["edges"], hv["edges"], labels=(labels, labels) if hv["exact"] and labels else None,
            title=f"layer {layer} · head {head}" + ("" if hv["exact"] else " (mean-pooled)"),
            log_scale=log_scale), key="md_head_map")
        s = {name: values[layer, head] for name, values in data["stats"].items()}
        st.caption(f"entropy {s['entropy_bits']:.2f} bits ({s['entropy_normalised']:.0%} of uniform) · "
                   f"mean distance {s['mean_distance']:.1f} tokens · sink {s['sink_mass']:.2f} · "
                   f"own token {s['diagonal_mass']:.2f} · keys for 90%: {s['keys_for_90']:.1f}")
with right:
    roll_labels = labels if data["exact"] else None
    show(charts.attention_heatmap(
        data["rollout"], data["rollout_edges"], data["rollout_edges"],
        labels=(roll_labels, roll_labels) if roll_labels else None, log_scale=log_scale,
        title="rollout through all layers" + ("" if data["exact"] else " (of the pooled maps: approximate)")),
        key="md_rollout")
    st.caption("Abnar & Zuidema (2020): heads averaged, each layer 0.5·A + 0.5·I for the skip "
               "connection, multiplied from the first layer to the last. Row i: which input tokens "
               "the final representation of token i draws on.")

st.subheader("Head statistics")
st.caption("One cell per head; averages over the head's query rows. Click a cell to open that head.")
show(charts.head_grids([(data["stats"][name], title, unit) for name, (title, unit) in um.STATS.items()],
                      selected=(layer, head)), key="md_grids", **um.clickable("md_grids"))

# -- cost ---------------------------------------------------------------------------------------
st.subheader("Cost per layer")
seq = data["seq_len"]
costs = totals = None
with shown_as_error("per-layer cost"):
    shape = model_shape(loaded.config)
    costs = [c.to_dict() for c in layer_costs(loaded.config, seq)]
    totals = model_flops(loaded.config, seq)
if costs:
    a, b, c, d = st.columns(4)
    a.metric("forward FLOPs", fmt.si(totals.total_flops, "FLOP"),
             help=f"sum over layers at {seq} tokens; the LM head would add {fmt.si(totals.lm_head_flops, 'FLOP')}")
    b.metric("attention core, % of FLOPs", f"{totals.attention_core_flops / totals.total_flops:.1%}",
             help="QKᵀ and AV; the rest is projections and MLP")
    c.metric("per token", fmt.si(totals.flops_per_token, "FLOP"))
    d.metric("KV cache per token", fmt.nbytes(kv_cache_curve(loaded.config, [1])[0]["bytes"])
             if shape.kind == "decoder" else "none (encoder)", help="keys and values of every layer, 16-bit")
    show(charts.layer_cost_bars(costs, title=f"FLOPs per layer at {seq} tokens (analytic)"), key="md_costs")
    st.caption(f"Convention: {_md(CONVENTION)}.")
    if shape.kind == "decoder":
        st.caption(f"Check against Kaplan et al.: {fmt.si(kaplan_flops_per_token(loaded.config, seq), 'FLOP')} "
                   f"per token by their formula, {fmt.si(kaplan_convention_flops_per_token(loaded.config, seq), 'FLOP')} "
                   f"counted layer by layer with their conventions ({_md(KAPLAN_CONVENTION)}).")

st.subheader("KV cache for decoding")
if costs:
    if shape.kind == "decoder":
        rows = kv_cache_curve(loaded.config, sorted({seq, *KV_CONTEXTS}))
        show(charts.kv_cache_chart(rows, title=f"{loaded.name}: KV cache against context (16-bit)",
                                   current=seq), key="md_kv")
        st.caption(_md(rows[0]["convention"]) + f". {loaded.name} has {shape.kv_heads} K/V head(s) for "
                   f"{shape.heads} query heads" + (f" and a {shape.window}-token window" if shape.window else "") + ".")
    else:
        st.info(f"{loaded.name} is an encoder: it reads the whole text at once and keeps no KV cache. "
                "Pick a decoder (gpt2-small, llama-gqa, mistral-swa, mqa-decoder) to see how GQA, MQA "
                "and a sliding window shrink it.")

st.subheader("Measured")
device = results.device()
again = st.button("Measure again", key="md_time_again", icon=":material/refresh:",
                  help="time every module once more (in the worker)")
timing = rows = None
with shown_as_error("time per module"):
    timing = um.module_timing(source, text, max_tokens, device, again=again)
    if timing:
        a, b, c = st.columns(3)
        a.metric("forward (median)", fmt.ms(timing["forward_ms"]),
                 help=f"p10 {fmt.ms(timing['forward_ms_p10'])} · p90 {fmt.ms(timing['forward_ms_p90'])} · "
                      f"{timing['repeats']} repeats on {timing['device']}")
        b.metric("attention : MLP", f"{timing['attention_ms'] / max(timing['mlp_ms'], 1e-9):.2f}",
                 help=f"attention modules {fmt.ms(timing['attention_ms'])}, MLP {fmt.ms(timing['mlp_ms'])}, "
                      f"elsewhere {fmt.ms(timing['other_ms'])}")
        c.metric("peak memory", fmt.nbytes(timing["peak_bytes"]), help=timing["peak_bytes_method"])
        show(charts.module_time_bars(timing), key="md_time")
        st.caption(f"Forward hooks around each layer's attention and MLP modules ({timing['timer']}), "
                   f"{timing['attn_implementation']} attention, median of {timing['repeats']} passes.")

st.subheader("Attention implementations side by side")
st.caption("The same weights and text under eager, sdpa and flex_attention. FlexAttention compiles "
           "on its first call: a minute or more on a CPU, so this runs on request.")
start = st.button("Time eager · sdpa · flex_attention", key="md_impls", icon=":material/timer:")
with shown_as_error("implementations"):
    rows = um.implementations(source, text, max_tokens, device, start=start)
    if rows:
        show(charts.implementation_bars(rows), key="md_impl_chart")
        for row in rows:
            if not row["ok"]:
                st.warning(f"{row['impl']} cannot run: {row['reason']}")
        table = pd.DataFrame([{"implementation": r["impl"], "median": fmt.ms(r["median_ms"]),
                               "p10–p90": f"{fmt.ms(r['p10_ms'])} – {fmt.ms(r['p90_ms'])}" if r["ok"] else "—",
                               "first call": fmt.ms(r["first_ms"]),
                               "max |Δ| vs the first": "—" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.2g}",
                               "reason": r["reason"]} for r in rows])
        st.dataframe(table, hide_index=True, width="stretch")

# -- serving and training ----------------------------------------------------------------------
st.subheader("Serving and training")
st.caption("The whole model served token by token with transformers' own KV cache, and the training step "
           "of its attention layers, measured in the worker against length on seeded random token ids "
           "(the text above plays no part: the cost does not depend on which tokens). Each curve stops "
           f"before a point that would not fit in memory or would run past {um.BUDGET_S:.0f} s.")
gpu = not device.startswith("cpu")
serve = train = None
st.markdown("**Serving: time to first token and decode**")
no_decode = decode_unsupported(loaded)
if no_decode:
    st.info(no_decode)
else:
    a, b = st.columns([1, 3], vertical_alignment="bottom")
    longest = a.selectbox("longest context", um.LENGTH_CHOICES, key="md_serve_max",
                          index=um.LENGTH_CHOICES.index(8192 if gpu else 2048))
    asked = b.button("Measure time to first token and decode", key="md_serve", icon=":material/speed:",
                     help=f"prefill and {um.SERVING_STEPS} decode steps at each context, in the worker")
    with shown_as_error("serving"):
        serve = um.serving(source, longest, device, start=asked)
        if serve:
            _measured_points_shown(serve, "context")
            left, right = st.columns(2)
            with left:
                show(charts.serving_chart(serve["points"], title=f"{loaded.name}: TTFT and decode per token "
                                          f"({serve['implementation']}, {serve['device']})"), key="md_serve_chart")
            with right:
                show(charts.kv_cache_measured_chart(serve["points"]), key="md_serve_cache")
            window = getattr(loaded.config, "sliding_window", None)
            st.caption(f"Convention: {_md(serve['convention'])}; {serve['timer']}. Cache: "
                       f"{_md(serve['cache_convention'])}; {cache_summary(serve)}." + (
                           f" transformers' sliding-window layer keeps {window - 1} tokens (the new token "
                           f"completes the window of {window}) as a view into the step's keys: right after a "
                           "prefill the whole prompt's keys stay allocated, until the first decode step."
                           if window else ""))

st.markdown("**Training: the attention layers' step**")
a, b = st.columns([1, 3], vertical_alignment="bottom")
longest_train = a.selectbox("longest sequence", um.LENGTH_CHOICES, key="md_train_max",
                            index=um.LENGTH_CHOICES.index(4096 if gpu else 512))
asked = b.button("Measure the train step", key="md_train", icon=":material/model_training:",
                 help="forward + backward through every attention module at each length, in the worker")
with shown_as_error("train step"):
    train = um.train_step(source, longest_train, device, start=asked)
    if train:
        _measured_points_shown(train, "seq")
        show(charts.train_step_chart(train["points"], title=f"{loaded.name}: training step of its "
                                     f"{train['layers']} attention layers ({train['implementation']}, "
                                     f"{train['device']})"), key="md_train_chart")
        methods = {p.get("peak_bytes_method") for p in measured_points(train)} - {None}
        st.caption(f"Convention: {_md(train['convention'])}; {train['timer']}. Peak memory: "
                   f"{', '.join(sorted(methods)) or 'not measured'}, from a separate untimed step, above what "
                   "was allocated before it (weights' gradients included). The estimate keeps every layer's "
                   "S×S scores, as eager attention does: an upper bound, checked against the free memory "
                   "before each length runs.")

# -- keep it ------------------------------------------------------------------------------------
st.subheader("Save this run")
if st.button("Save to the run store", key="md_save", icon=":material/save:",
             help="the model, text, per-layer costs, the timings measured above and the maps"):
    with shown_as_error("saving the run"):
        run_spec = {"model": source, "text": text, "max_tokens": max_tokens, "seq": seq,
                    "device": device, "layers": layers, "heads": heads}
        run_results = {"model": {"name": loaded.name, "source": loaded.source, "kind": loaded.kind,
                                 "num_parameters": loaded.num_parameters},
                       "tokens": data["tokens"], "layer_costs": costs or [],
                       "flops": totals.total_flops if totals else None,
                       "timing": timing or {}, "implementations": rows or [],
                       "serving": serve or {}, "train_step": train or {}}
        run_id = results.save_run("model", run_spec, run_results, None, maps={"maps": maps})
        if run_id is not None:
            st.success(f"Saved as run #{run_id}: see it on the Runs page.")
