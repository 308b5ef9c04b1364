"""Page state that survives reruns and lives in the URL, so a link reproduces a view."""
from __future__ import annotations

from typing import Any

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
    return float(text) if isinstance(default, float) else text


def spec_keys() -> list[str]:
    """The URL keys of a spec: its shared fields and every declared variant parameter."""
    return [*SHARED_FIELDS, *declared_params.declared()]


def spec_values() -> dict[str, Any]:
    """The spec fields of this session: from the session, else from the URL, else defaults."""
    if SPEC_KEY not in st.session_state:
        values = _DEFAULT.to_dict()
        values["kv_seq"] = values["kv_heads"] = values["d_model"] = None
        for name in spec_keys():
            if name in st.query_params:
                try:
                    values[name] = _parse(name, st.query_params[name])
                except ValueError:
                    pass  # a hand-edited URL; the default stands and the editor shows it
        st.session_state[SPEC_KEY] = values
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


def url_value(name: str, default: Any) -> Any:
    raw = st.query_params.get(name)
    if raw is None:
        return default
    try:
        return type(default)(raw) if not isinstance(default, bool) else raw.lower() in ("1", "true")
    except ValueError:
        return default
