"""Stage 5's parts: instruments, scoring, report, and what a result holds (``results``); the metrics, the
benchmark set and the pseudo-view check."""
