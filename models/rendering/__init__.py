"""Volume rendering: the generic ray marcher (``volume``), tri-plane fields (``triplane``), and 2D super-resolution
(``superres``)."""
