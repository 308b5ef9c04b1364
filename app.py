"""attn: the cost of attention, made visible. Run with `make run` (or `streamlit run app.py`)."""
import streamlit as st

from ui.sidebar import device_box, spec_editor
from ui.state import current_mode

st.set_page_config(page_title="attn · the cost of attention", page_icon=":material/flashlight_on:", layout="wide")

# the pages that work on the shared attention spec; the others get no spec editor in the sidebar
SPEC_PAGES = {"Playground", "Scaling", "Economics"}
# the pages with a regime selector (forward / train / decode): in decode their spec is a decode
# step's, edited as context and new_tokens; the other spec pages get the forward spec
REGIME_PAGES = {"Playground", "Scaling"}
PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("views/story.py", title="Story", icon=":material/auto_stories:"),
    st.Page("views/playground.py", title="Playground", icon=":material/science:"),
    st.Page("views/scaling.py", title="Scaling", icon=":material/show_chart:"),
    st.Page("views/roofline.py", title="Roofline", icon=":material/landscape:"),
    st.Page("views/monitor.py", title="Live monitor", icon=":material/monitor_heart:"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("views/runs.py", title="Runs", icon=":material/storage:"),
    st.Page("views/economics.py", title="Economics", icon=":material/payments:"),
    st.Page("views/models.py", title="Models", icon=":material/neurology:"),
    st.Page("views/planner.py", title="Planner", icon=":material/tune:"),
]

# metric values at a size that fits three cards across a variant's column
st.markdown("<style>[data-testid='stMetricValue'] {font-size: 1.55rem;}</style>", unsafe_allow_html=True)

page = st.navigation(PAGES)
st.sidebar.title("attn")
device_box()
if page.title in SPEC_PAGES:
    mode = current_mode() if page.title in REGIME_PAGES else "forward"
    st.session_state["current_spec"] = spec_editor(mode=mode)
page.run()
