"""The sidebar every page shares: the device, and the spec editor."""
from __future__ import annotations

import streamlit as st

from attn import variants
from attn.device import device_summary
from attn.params import Param
from attn.regimes import decode_spec
from attn.spec import DTYPE_BYTES, AttentionSpec, divisors
from ui import format as fmt
from ui.state import decode_values, link_notes, shown, spec_values


_SPEC_DEFAULTS = AttentionSpec()


@st.cache_data(ttl=5, show_spinner=False)
def _device() -> dict:
    return device_summary("auto")


def device_box() -> dict:
    info = _device()
    with st.sidebar:
        if info["gpu"]:
            st.markdown(f"**GPU** · {info['name']}  \n{fmt.nbytes(info['free_bytes'])} free of "
                        f"{fmt.nbytes(info['total_bytes'])}")
        else:
            st.markdown(f"**CPU only** · {info['label']}  \n{fmt.nbytes(info['free_bytes'])} RAM available")
    return info


def _fitted(values: dict, name: str, lo: int, hi: int, notes: list[str]) -> int:
    """values[name] inside the editor's range (st.number_input refuses a value outside it): a
    hand-edited link gets the nearest value it allows, and a note that says so."""
    value = int(values[name])
    fitted = min(max(value, lo), hi)
    if fitted != value:
        notes.append(f"{name} {value:,} from the link is outside {lo:,}..{hi:,}: using {fitted:,}")
    return fitted


def _chosen(values: dict, name: str, choices: list[str], notes: list[str]) -> int:
    """The index of values[name] among the choices; the spec's default, with a note, when the
    link named something else."""
    if values[name] in choices:
        return choices.index(values[name])
    default = getattr(_SPEC_DEFAULTS, name)
    notes.append(f"{name} {shown(str(values[name]))} from the link is not one of {', '.join(choices)}: "
                 f"using {default}")
    return choices.index(default)


def spec_editor(params_for: list[str] | None = None, mode: str = "forward") -> AttentionSpec | None:
    """Edit the shared spec in the sidebar. Returns it, or None after showing why it is invalid.

    params_for: the variants whose parameters to show (all when None).
    mode: in decode, the fields are the step's (context and new_tokens instead of seq, kv_seq
    and causal) and the spec returned is the step's (regimes.decode_spec).
    """
    values = spec_values()
    decode = decode_values() if mode == "decode" else None
    notes: list[str] = link_notes()  # what the link asked for and did not get, read just above
    sb = st.sidebar
    sb.subheader("Spec")
    note_slot = sb.container()  # the notes come out of the widgets below, and show above them
    c1, c2 = sb.columns(2)
    values["batch"] = c1.number_input("batch", 1, 4096, _fitted(values, "batch", 1, 4096, notes),
                                      key="w_batch")
    if decode is None:
        values["seq"] = c2.number_input("seq (queries)", 1, 1 << 20,
                                        _fitted(values, "seq", 1, 1 << 20, notes), step=128, key="w_seq")
    else:  # a decode step's queries are its new tokens and its keys the cache: asked for as such
        decode["context"] = c2.number_input(
            "context (cached keys)", 1, 1 << 20, _fitted(decode, "context", 1, 1 << 20, notes),
            step=1024, key="w_context", help="the keys and values in the cache, the new tokens' included")
    values["heads"] = c1.number_input("heads", 1, 512, _fitted(values, "heads", 1, 512, notes),
                                      key="w_heads")
    values["head_dim"] = c2.number_input("head_dim", 1, 1024,
                                         _fitted(values, "head_dim", 1, 1024, notes), key="w_head_dim")
    values["kv_heads"] = values.get("kv_heads") or values["heads"]
    values["kv_heads"] = int(c1.number_input(
        "kv_heads (GQA)", 1, 512, _fitted(values, "kv_heads", 1, 512, notes), key="w_kv_heads",
        help=f"key/value heads shared by groups of query heads; 1 = MQA; must divide heads "
             f"({', '.join(map(str, divisors(int(values['heads']))))})"))
    dtypes = list(DTYPE_BYTES)
    values["dtype"] = c2.selectbox("dtype", dtypes, index=_chosen(values, "dtype", dtypes, notes),
                                   key="w_dtype")
    if decode is not None:
        decode["new_tokens"] = c1.number_input(
            "new_tokens", 1, 1 << 20, _fitted(decode, "new_tokens", 1, 1 << 20, notes),
            key="w_new_tokens", help="the newest tokens, the last of the cache, whose queries one step "
                                     "computes (1: plain decoding; more: a speculative or chunked step)")
        sb.caption("A decode step is causal from the bottom right: each new token sees the cache up "
                   "to itself.")
    else:
        _shape_fields(values, notes)
    _variant_params(values, params_for, notes)
    for note in notes:
        note_slot.warning(note)
    spec = None
    try:
        spec = AttentionSpec(**values)
        if decode is not None:
            spec = decode_spec(spec, int(decode["context"]), int(decode["new_tokens"]))
    except ValueError as err:
        sb.error(str(err))
        st.error(f"The spec is not valid: {err}")
        spec = None
    return spec


def _shape_fields(values: dict, notes: list[str]) -> None:
    """causal, and the keys' length when it is not the queries'."""
    sb = st.sidebar
    values["causal"] = sb.toggle("causal", bool(values["causal"]), key="w_causal")
    same = sb.checkbox("kv_seq = seq", values.get("kv_seq") in (None, values["seq"]), key="w_kv_same")
    if same:
        values["kv_seq"] = None
    else:
        values["kv_seq"] = values.get("kv_seq") or values["seq"]
        values["kv_seq"] = sb.number_input("kv_seq (keys)", 1, 1 << 20,
                                           _fitted(values, "kv_seq", 1, 1 << 20, notes), key="w_kv_seq")
        aligns = ["bottom_right", "top_left"]
        values["causal_align"] = sb.radio("causal alignment", aligns, horizontal=True,
                                          index=_chosen(values, "causal_align", aligns, notes),
                                          key="w_align",
                                          help="bottom_right: the last query sees every key (decoding "
                                               "with a KV cache); top_left: torch's is_causal")


def _variant_params(values: dict, names: list[str] | None, notes: list[str]) -> None:
    """A field for each parameter of the chosen variants, drawn from its declaration."""
    wanted: dict[str, tuple[Param, list[str]]] = {}
    for name in names if names is not None else variants.names():
        for param in variants.get(name).params:
            wanted.setdefault(param.name, (param, []))[1].append(name)
    if wanted:
        with st.sidebar.expander("Variant parameters", expanded=True):
            for param, owners in wanted.values():
                _param_field(param, owners, values, notes)
    values["seed"] = st.sidebar.number_input("seed", 0, 2**31 - 1,
                                             _fitted(values, "seed", 0, 2**31 - 1, notes), key="w_seed")


def _param_field(param: Param, owners: list[str], values: dict, notes: list[str]) -> None:
    key, label = f"w_{param.name}", f"{param.name} ({', '.join(owners)})"
    values.setdefault(param.name, param.default)
    if param.choices:
        choices = list(param.choices)
        values[param.name] = st.selectbox(label, choices, key=key, help=param.describe(),
                                          index=_chosen(values, param.name, choices, notes))
    elif param.kind is bool:
        values[param.name] = st.toggle(label, bool(values[param.name]), key=key, help=param.describe())
    else:
        lo, hi = param.lo, param.hi
        value = values[param.name]
        if lo is not None and hi is not None:
            value = _fitted(values, param.name, lo, hi, notes)
        values[param.name] = st.number_input(label, lo, hi, value, key=key, help=param.describe())
