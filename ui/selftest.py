"""The self-test's table on a page: a line of counts, then one row a check (failed first)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

ORDER = {"failed": 0, "passed": 1, "not possible here": 2}
ICON = {"failed": "✗", "passed": "✓", "not possible here": "–"}


def summary_line(result: dict) -> str:
    quick = ", quick" if result.get("quick") else ""
    return (f"On **{result['device_name']}**{quick}: **{result['passed']} passed**, "
            f"**{result['failed']} failed**, {result['not_possible']} not possible here, "
            f"in {result['wall_s']:.0f} s (saved as run {result.get('run_id', '–')})")


def checks_table(result: dict) -> pd.DataFrame:
    rows = sorted(result["checks"], key=lambda r: ORDER.get(r["status"], 3))
    return pd.DataFrame([{"": ICON.get(r["status"], "?"), "status": r["status"], "check": r["name"],
                          "figure": r["figure"], "why / what it compares": r["reason"]} for r in rows])


def show(result: dict) -> None:
    """The counts, a line for a run that stopped early, and the table."""
    (st.error if result["failed"] else st.success)(summary_line(result))
    if not result.get("complete", True):
        st.warning("The self-test was stopped before every check ran: the table has the checks that did.")
    st.dataframe(checks_table(result), hide_index=True, width="stretch")
