"""Stage 5's parts: what its results hold (``results``)."""
