"""attn: the cost of attention, made visible. Run with `make run` (or `streamlit run app.py`)."""
import streamlit as st

from ui.sidebar import device_box, spec_editor

st.set_page_config(page_title="attn · the cost of attention", page_icon="🔦", layout="wide")

# the pages that work on the shared attention spec; the others get no spec editor in the sidebar
SPEC_PAGES = {"Playground", "Scaling", "Economics"}
PAGES = [
    st.Page("views/overview.py", title="Overview", icon="🏠", default=True),
    st.Page("views/playground.py", title="Playground", icon="🧪"),
    st.Page("views/scaling.py", title="Scaling", icon="📈"),
    st.Page("views/roofline.py", title="Roofline", icon="🏔️"),
    st.Page("views/monitor.py", title="Live monitor", icon="📟"),
    st.Page("views/compare.py", title="Compare", icon="⚖️"),
    st.Page("views/runs.py", title="Runs", icon="🗄️"),
    st.Page("views/economics.py", title="Economics", icon="💸"),
    st.Page("views/models.py", title="Models", icon="🤗"),
]

# metric values at a size that fits three cards across a variant's column
st.markdown("<style>[data-testid='stMetricValue'] {font-size: 1.55rem;}</style>", unsafe_allow_html=True)

page = st.navigation(PAGES)
st.sidebar.title("attn")
device_box()
if page.title in SPEC_PAGES:
    st.session_state["current_spec"] = spec_editor()
page.run()
