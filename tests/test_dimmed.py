"""While a new sweep runs, the last one stays on the Scaling page, dimmed under the progress bar,
instead of vanishing until the new one ends (ui.dimmed)."""
import pytest

from tests.conftest import open_app
from tests.test_regime_pages import _sweep

pytestmark = pytest.mark.usefixtures("in_process_jobs")


def test_the_previous_sweep_stays_dimmed_while_the_next_one_runs():
    at = open_app("views/scaling.py", seq="32", variants="sdpa,dense", lo="5", hi="6")
    first = _sweep(at)
    charts_before = len(at.get("plotly_chart"))
    assert charts_before > 0
    at.number_input(key="sc_hi").set_value(10).run()  # a longer sweep: still running when drawn
    at.button(key="sc_run").click().run()
    assert any("previous sweep, dimmed" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == charts_before  # the last figures, not an empty page
    assert any("opacity: 0.4" in m.value for m in at.markdown)
    assert at.session_state["sweep_previous"] is first
