"""attn: the cost of attention, measured. A library first; the dashboard and CLI sit on top."""
__version__ = "0.1.0"
