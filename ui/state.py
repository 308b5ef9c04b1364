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


LINK_NOTES = "link_notes"  # what a hand-edited link asked for that the spec could not take


def shown(raw: str, limit: int = 40) -> str:
    """A value from the link as a note quotes it: a 100k-character value is not echoed whole."""
    return repr(raw if len(raw) <= limit else raw[:limit] + "…")


def _parse(name: str, text: str) -> Any:
    """A spec field or variant parameter from the URL, typed like its default. Not range-checked
    here: the spec editor fits a hand-edited value into its field's range, with a note. NaN and
    infinities are refused like any text that is not a number (ValueError)."""
    if name in ("kv_seq", "kv_heads", "d_model"):
        return int(text)
    default = getattr(_DEFAULT, name, None)
    param = declared_params.declared().get(name)
    if default is None and param is not None:
        default = param.default
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"{text} is not a finite number")
        return value
    return text


def spec_keys() -> list[str]:
    """The URL keys of a spec: its shared fields and every declared variant parameter."""
    return [*SHARED_FIELDS, *declared_params.declared()]


def spec_from_query(query: Mapping[str, str], notes: list[str] | None = None) -> dict[str, Any]:
    """The spec fields a link gives, over the defaults. A value that does not parse leaves its
    default, with a line in `notes`; the spec editor then fits each value into its field's
    range, with a note of its own."""
    values = _DEFAULT.to_dict()
    values["kv_seq"] = values["kv_heads"] = values["d_model"] = None
    for name in spec_keys():
        if name in query:
            raw = query[name]
            try:
                values[name] = _parse(name, raw)
            except ValueError:  # a hand-edited URL: the default stands
                if notes is not None:
                    notes.append(f"{name} {shown(raw)} from the link is not a value this field takes: "
                                 "using the default")
    return values


def spec_values() -> dict[str, Any]:
    """The spec fields of this session: from the session, else from the URL, else defaults."""
    if SPEC_KEY not in st.session_state:
        notes: list[str] = []
        st.session_state[SPEC_KEY] = spec_from_query(st.query_params, notes)
        for line in notes:
            _note(line)
    return st.session_state[SPEC_KEY]


def _note(line: str) -> None:
    st.session_state.setdefault(LINK_NOTES, []).append(line)


def link_notes() -> list[str]:
    """The notes on the link's spec values, once: the spec editor shows them above its fields."""
    return st.session_state.pop(LINK_NOTES, [])


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
            raw = st.query_params.get(name)
            if raw is None:
                continue
            try:
                values[name] = int(raw)
            except ValueError:  # a hand-edited URL: the default stands, with a note
                _note(f"{name} {shown(raw)} from the link is not a whole number: using {values[name]:,}")
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


def url_names(name: str, default: list[str], known: list[str]) -> list[str]:
    """The link's comma-separated names that are among `known` (the default when it names none),
    with a warning for those left out."""
    asked = url_list(name, default)
    unknown = [x for x in asked if x not in known]
    if unknown:
        among = ", ".join(known) if len(known) <= 12 else f"the {len(known):,} here"
        st.warning(f"{name}: {shown(', '.join(unknown))} from the link "
                   f"{'is' if len(unknown) == 1 else 'are'} not among {among}: left out")
    return [x for x in dict.fromkeys(asked) if x in known]


def read_url_value(raw: str | None, default: Any, lo: Any = None, hi: Any = None,
                   choices: Sequence[Any] | None = None) -> tuple[Any, str | None]:
    """(the link's value `raw` typed like `default`, None), or (what to use instead, a note
    saying so): not of that type, not a finite number, outside lo..hi (the nearest value
    allowed) or not among `choices` (compared as text). Pure, so that it is fuzzed directly."""
    if raw is None:
        return default, None
    if choices is not None:
        for choice in choices:
            if str(choice) == raw:
                return choice, None
        return default, f"{shown(raw)} from the link is not one of {', '.join(map(str, choices))}: using {default}"
    if isinstance(default, bool):
        return raw.lower() in ("1", "true"), None
    if not isinstance(default, (int, float)):
        return type(default)(raw), None
    whole = isinstance(default, int)
    try:
        value = int(raw) if whole else float(raw)
        if not math.isfinite(value):
            raise ValueError(raw)
    except (ValueError, OverflowError):
        return default, (f"{shown(raw)} from the link is not a finite {'whole ' if whole else ''}number: "
                         f"using {default:,}")
    fitted = type(default)(min(max(value, lo if lo is not None else value), hi if hi is not None else value))
    if fitted != value:
        return fitted, f"{value:,} from the link is outside {lo:,}..{hi:,}: using {fitted:,}"
    return fitted, None


def url_value(name: str, default: Any, lo: Any = None, hi: Any = None,
              choices: Sequence[Any] | None = None) -> Any:
    """The link's value of `name`, fitted to the widget it seeds (read_url_value), with a
    warning that says what was used instead of what the link asked."""
    value, note = read_url_value(st.query_params.get(name), default, lo, hi, choices)
    if note:
        st.warning(f"{name} {note}")
    return value


def url_number(name: str, default: int | float, lo: int | float, hi: int | float) -> int | float:
    """The link's number `name` inside lo..hi (a widget refuses a value outside its range)."""
    return url_value(name, default, lo, hi)


def url_choice(name: str, default: Any, choices: Sequence[Any]) -> Any:
    """The link's value of `name` when it is one of `choices`, else the default."""
    return url_value(name, default, choices=choices)
