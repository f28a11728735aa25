"""`shelfgate report`: a trace (and optionally truth, timeline, events, calibration) made into
one self-contained HTML page of plots (inputs.py reads, analysis.py computes, plots.py draws with
matplotlib's Agg backend, page.py assembles)."""
