"""Planner: a plan for a model's attention (a window or block layout per layer, fewer key/value
heads, another activation), what it saves, what it costs in quality, and the plans side by side."""
import pandas as pd
import streamlit as st

from attn import charts
from attn.models import DEFAULT_MODEL, PRESETS, model_choices
from attn.models.sources import MINILM_DESCRIPTION
from ui import format as fmt
from ui import model_dirs
from ui import planner as up
from ui.plot import show
from ui.state import url_choice, url_number, url_value, write_url

ACTIVATIONS = ("as planned", "softmax", "sigmoid", "relu")
DEFAULT_PLAN = "0-4:sliding_window:8,5:sdpa"
LOCAL = "local directory…"
# a plan names each layer at most once, with ranges: a 100-layer model's fits in a few thousand
# characters, so a longer one is refused before the worker parses it or the URL carries it
MAX_PLAN_CHARS = 10_000

st.title(":material/tune: Planner")
st.caption("Write a plan for a model's attention, compactly (`0-4:sliding_window:128,5:sdpa`; kinds full, "
           "sliding_window:W, block_sparse:B; `:sigmoid` or `:relu` after an entry; layers no entry names "
           "stay full), evaluate it in the worker, and compare plans on a cost/quality frontier. Every "
           "evaluated plan is saved to the run store (kind plan).")

choices = [*model_choices(), LOCAL]
if "pl_model" not in st.session_state:
    wanted = url_value("model", DEFAULT_MODEL)
    st.session_state["pl_model"] = wanted if wanted in choices else LOCAL
    st.session_state["pl_dir"] = "" if wanted in choices else wanted
    st.session_state["pl_plan"] = url_value("plan", DEFAULT_PLAN)
    st.session_state["pl_kv"] = url_number("kv_heads", 0, 0, 128)
    st.session_state["pl_act"] = url_choice("activation", ACTIVATIONS[0], ACTIVATIONS)
    st.session_state["pl_tokens"] = url_number("tokens", 128, 1, 512)
c1, c2, c3, c4 = st.columns([2, 3, 1, 1])
choice = c1.selectbox("Model", choices, key="pl_model", format_func=lambda c: c if c == LOCAL else (
    f"{c} · {PRESETS.get(c, MINILM_DESCRIPTION)}"))
source = choice if choice != LOCAL else c1.text_input(
    "Model directory", key="pl_dir", placeholder="a directory with config.json and *.safetensors weights").strip()
layers = c2.text_input("Plan", key="pl_plan", help="LAYERS:KIND[:PARAM][:ACTIVATION], comma-separated; "
                       "LAYERS one layer, a range (0-4) or all")
kv_heads = int(c3.number_input("KV heads", 0, 128, key="pl_kv",
                               help="key/value heads the plan keeps (0: the model's own); pooled from the "
                                    "model's as GQA uptraining starts"))
activation = c4.selectbox("activation", ACTIVATIONS, key="pl_act",
                          help="for every layer; 'as planned' keeps each entry's own (softmax by default)")
d1, d2, d3 = st.columns([1, 2, 2], vertical_alignment="bottom")
max_tokens = int(d1.number_input("max tokens", 1, 512, step=32, key="pl_tokens",
                                 help="the timed text (the shipped sentences, joined) is cut here; the maps "
                                      f"use its first {up.MAP_TOKENS} tokens"))
measure = d2.toggle("time prefill and decode", value=True, key="pl_measure",
                    help="plan and base under eager attention, median of 5 passes; off: costs and quality only")
asked = d3.button("Evaluate", key="pl_go", icon=":material/play_arrow:", type="primary")
too_long = len(layers) > MAX_PLAN_CHARS
write_url({}, model=source or None, plan=None if too_long else layers, kv_heads=kv_heads or None,
          activation=None if activation == ACTIVATIONS[0] else activation, tokens=max_tokens)

refused = model_dirs.refusal(source) if choice == LOCAL and source else None
if choice == LOCAL:
    st.caption(model_dirs.caption())
if asked and not source:
    st.error("Name a local model directory (config.json and *.safetensors) to plan for.")
elif asked and refused:  # never queued: the worker would not look at the path either
    st.error(refused)
elif asked and too_long:
    st.error(f"The plan is {len(layers):,} characters, past the {MAX_PLAN_CHARS:,} a plan needs: name each "
             "layer once and write ranges (0-11:sliding_window:128).")
elif asked:
    up.evaluate(source, layers, kv_heads or None, None if activation == ACTIVATIONS[0] else activation,
                None, max_tokens, measure)
up.follow_evaluation()

entries = up.plans()
if not entries:
    st.info("No plan evaluated yet in this session: press Evaluate. A bad plan (a layer out of range, "
            "window 0, KV heads that do not divide the heads) says what to change.")
    st.stop()

# -- one plan: its cards and maps -------------------------------------------------------------------
labels = [e["label"] for e in entries]
if st.session_state.get(up.SHOWN) not in labels:
    st.session_state[up.SHOWN] = labels[-1]
shown = st.selectbox("Plan shown", labels, key=up.SHOWN)
entry = next(e for e in entries if e["label"] == shown)
r = entry["result"]
m, totals, kv = r["model"], r["flops"]["totals"], r["kv_cache"]
st.subheader(f"{m['name']}: {r['plan']['plan']}")
st.caption(f"{m['kind']}, {m['layers']} layers, {m['heads']} heads ({m['kv_heads']} KV), {r['seq_len']} tokens"
           + (f" · saved as run #{entry['run_id']}" if entry["run_id"] is not None else ""))
at_8k = up.kv_at(r, 8192)
cards = [
    ("attention FLOPs saved, % of base", up.share(totals["attention_core_flops_saved"]),
     f"QKᵀ and AV at {r['seq_len']} tokens: {fmt.si(totals['attention_core_flops'], 'FLOP')} against "
     f"{fmt.si(totals['base_attention_core_flops'], 'FLOP')}; whole layers {up.share(totals['total_flops_saved'])} "
     f"saved. {r['flops']['convention']}"),
    ("KV cache per token", fmt.nbytes(kv["bytes_per_token"]),
     f"base {fmt.nbytes(kv['base_bytes_per_token'])}; {kv['kv_heads']} KV heads. {kv['convention']}"),
    ("KV cache at 8k saved, % of base", up.share(at_8k["saved"]),
     f"{fmt.nbytes(at_8k['bytes'])} against {fmt.nbytes(at_8k['base_bytes'])} at 8,192 tokens"
     + ("" if kv["kind"] == "decoder" else " (an encoder keeps no cache: a what-if, as if it decoded)")),
]
t, dec = r.get("timing"), r.get("decode")
cards.append(("prefill, plan / base", f"{fmt.ms(t['forward_ms'])} / {fmt.ms(t['base_forward_ms'])}", t["convention"])
             if t else ("prefill, plan / base", "not timed", "turn on 'time prefill and decode' and evaluate again"))
if dec and dec.get("measured"):
    cards.append(("decode per token, plan / base", f"{fmt.ms(dec['decode_ms'])} / {fmt.ms(dec['base_decode_ms'])}",
                  f"at context {dec['context']:,}, {dec['steps']} steps. {dec['convention']}"))
for col, (name, value, note) in zip(st.columns(len(cards)), cards):
    col.metric(name, value, help=note)
if dec and not dec.get("measured"):
    st.caption(f"Decode: {dec['reason']}.")

q = r["quality"]
if q["measured"]:
    a, b, c = st.columns(3)
    a.metric("mean cosine to the base", f"{q['mean_cosine']:.4f}", help=q["convention"])
    b.metric("worst sentence", f"{q['min_cosine']:.4f}", help="the lowest cosine of the sentences")
    c.metric("Spearman of similarities", f"{q['spearman']:.4f}",
             help=f"rank correlation of the {q['pairs']} pairwise similarities, plan against base")
    st.caption(f"Quality on {q['sentences']} shipped sentences ({q['tokens_min']}–{q['tokens_max']} tokens), "
               "MiniLM's mean-pooled embeddings.")
else:
    st.info(f"Cost only: {q['reason']}.")

maps = entry["maps"]
if maps:
    n_layers, n_heads = maps["before"].shape[:2]
    a, b, _ = st.columns([1, 1, 4])
    layer = a.selectbox("layer", list(range(n_layers)), key="pl_layer")
    head = b.selectbox("head", ["mean of heads", *range(n_heads)], key="pl_head")
    head = None if head == "mean of heads" else int(head)
    edges = list(range(len(maps["tokens"]) + 1))
    tok = [f"{i} {t}" for i, t in enumerate(maps["tokens"])]
    left, right = st.columns(2)
    for col, which, name in ((left, "before", "base"), (right, "after", "plan")):
        with col:
            show(charts.attention_heatmap(up.layer_map(maps, which, layer, head), edges, edges, labels=(tok, tok),
                                          title=f"{name}: layer {layer} · " + ("mean of heads" if head is None
                                                                              else f"head {head}"),
                                          log_scale=True), key=f"pl_map_{which}")
    st.caption(f"The weights each layer applies to the first {len(maps['tokens'])} tokens of the text, from "
               "transformers' output_attentions; the plan's window or block layout written out as the masked "
               "softmax its kernel computes. Later layers differ also because earlier layers changed.")

# -- every plan of the session ------------------------------------------------------------------------
st.subheader("Plans compared")
st.dataframe(pd.DataFrame(up.table_rows(entries)), hide_index=True, width="stretch")
same = [e for e in entries if e["model"] == m["name"] and e["result"]["seq_len"] == r["seq_len"]]
cost = st.radio("cost axis", list(up.COSTS), horizontal=True, key="pl_cost")
points = up.frontier_points(same, cost)
if points:
    unit = "FLOP" if cost == "attention FLOPs" else "bytes"
    show(charts.plan_frontier_chart(points, f"{cost} ({unit})",
                                    title=f"{m['name']} at {r['seq_len']} tokens: quality against {cost}"),
         key="pl_frontier")
    st.caption("Up and left is better. Grey plans are dominated: another plan (or the base) is no worse on both "
               "axes and better on one. Attention FLOPs are useful FLOPs (4·B·H·D per unmasked pair); KV cache "
               "16-bit keys and values of every layer.")
else:
    st.caption(f"No frontier for {m['name']}: its quality is not measured (cost only), so plans compare in "
               "the table alone.")
