"""Page state that survives reruns and lives in the URL, so a link reproduces a view."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import streamlit as st

from attn import params as declared_params
from attn.regimes import MODES
from attn.spec import SHARED_FIELDS, AttentionSpec

SPEC_KEY = "spec"
MODE_KEY = "mode"  # the regime of the pages that have a regime selector (Playground, Scaling)
DECODE_KEY = "decode"  # the decode step's context and new_tokens, beside the spec
DECODE_DEFAULTS = {"context": 4096, "new_tokens": 1}
_DEFAULT = AttentionSpec(seq=512, heads=8, head_dim=64, causal=True, device="auto")


def _parse(name: str, text: str) -> Any:
    """A spec field or variant parameter from the URL, typed like its default. Not range-checked
    here: the spec editor fits a hand-edited value into its field's range, with a note."""
    if name in ("kv_seq", "kv_heads", "d_model"):
        return int(text)
    default = getattr(_DEFAULT, name)
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        value = float(text)
        if not math.isfinite(value):  # no field can show it (st.number_input refuses inf)
            raise ValueError(f"{name} must be a finite number, got {text!r}")
        return value
    return text


def spec_from_query(query: Mapping[str, str]) -> dict[str, Any]:
    """The spec fields a link gives, over the defaults; a value that does not parse leaves its
    default (the spec editor then fits each into its field's range, with a note)."""
    values = _DEFAULT.to_dict()
    values["kv_seq"] = values["kv_heads"] = values["d_model"] = None
    for name in spec_keys():
        if name in query:
            try:
                values[name] = _parse(name, query[name])
            except ValueError:
                pass  # a hand-edited URL; the default stands and the editor shows it
    return values


def spec_keys() -> list[str]:
    """The URL keys of a spec: its shared fields and every declared variant parameter."""
    return [*SHARED_FIELDS, *declared_params.declared()]


def spec_values() -> dict[str, Any]:
    """The spec fields of this session: from the session, else from the URL, else defaults."""
    if SPEC_KEY not in st.session_state:
        st.session_state[SPEC_KEY] = spec_from_query(st.query_params)
    return st.session_state[SPEC_KEY]


def current_mode() -> str:
    """The regime of this session: from the session, else from the URL's `mode=`, else forward.
    It lives in the session like the spec, so the Playground and the Scaling page share it and
    the sidebar (drawn before the page) knows it."""
    if MODE_KEY not in st.session_state:
        asked = st.query_params.get("mode", "forward")
        st.session_state[MODE_KEY] = asked if asked in MODES else "forward"
        if asked not in MODES:
            st.session_state["mode_note"] = (f"mode {asked!r} from the link is not one of "
                                             f"{', '.join(MODES)}: using forward")
    return st.session_state[MODE_KEY]


def set_mode(mode: str) -> None:
    st.session_state[MODE_KEY] = mode if mode in MODES else "forward"


def decode_values() -> dict[str, int]:
    """The decode step's `context` and `new_tokens` of this session: from the session, else from
    the URL, else 4096 cached keys and one new token."""
    if DECODE_KEY not in st.session_state:
        values = dict(DECODE_DEFAULTS)
        for name in values:
            try:
                values[name] = int(st.query_params.get(name, values[name]))
            except ValueError:
                pass  # a hand-edited URL; the default stands
        st.session_state[DECODE_KEY] = values
    return st.session_state[DECODE_KEY]


def regime_url(mode: str) -> dict[str, Any]:
    """The URL keys of a regime: `mode` (none for forward), and in decode context and new_tokens."""
    if mode == "forward":
        return {}
    return {"mode": mode, **(decode_values() if mode == "decode" else {})}


def current_spec() -> AttentionSpec | None:
    """The spec the sidebar holds this run (None when invalid; the sidebar shows why)."""
    return st.session_state.get("current_spec")


def sync_url(**extra: Any) -> None:
    """Put the spec (what differs from the defaults) and this page's own values into the URL."""
    write_url(spec_values(), **extra)


def write_url(values: dict[str, Any], **extra: Any) -> None:
    params = {}
    default = _DEFAULT.to_dict()
    for name, value in values.items():
        if value is None or (name in default and value == default[name] and name not in ("causal",)):
            continue
        params[name] = str(value).lower() if isinstance(value, bool) else str(value)
    for name, value in extra.items():
        if value not in (None, "", []):
            params[name] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    if dict(st.query_params) != params:
        st.query_params.from_dict(params)


def url_list(name: str, default: list[str]) -> list[str]:
    raw = st.query_params.get(name)
    return [x for x in raw.split(",") if x] if raw else list(default)


def url_value(name: str, default: Any, lo: Any = None, hi: Any = None,
              choices: Sequence[Any] | None = None) -> Any:
    """A page's own URL parameter, typed like its default and kept inside lo..hi or among
    choices, so the widget it seeds accepts it; a hand-edited link gets a warning saying what
    was used instead."""
    value, note = read_url_value(st.query_params.get(name), default, lo, hi, choices)
    if note:
        st.warning(f"{name} {note}")
    return value


def read_url_value(raw: str | None, default: Any, lo: Any = None, hi: Any = None,
                   choices: Sequence[Any] | None = None) -> tuple[Any, str | None]:
    """(the value of `raw` typed like `default`, None), or (what to use instead, a note saying
    so) when it does not parse, is not finite, or is outside lo..hi or the choices."""
    if raw is None:
        return default, None
    try:
        value = raw.lower() in ("1", "true") if isinstance(default, bool) else type(default)(raw)
    except (ValueError, OverflowError):
        return default, f"{raw!r} from the link is not a {type(default).__name__}: using {default}"
    if isinstance(value, float) and not math.isfinite(value):
        return default, f"{raw!r} from the link is not a finite number: using {default}"
    if choices is not None and value not in choices:
        return default, (f"{value!r} from the link is not one of {', '.join(map(str, choices))}: "
                         f"using {default}")
    if lo is not None and value < lo or hi is not None and value > hi:
        fitted = lo if lo is not None and value < lo else hi
        return fitted, f"{value} from the link is outside {lo}..{hi}: using {fitted}"
    return value, None
