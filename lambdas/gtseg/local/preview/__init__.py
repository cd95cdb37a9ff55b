"""The worker task page in a real browser: gtseg's stand-in for Ground Truth's crowd elements
(``standin/``), the server that serves rendered templates with it (``server``), the
``gtseg preview`` site (``session``) and how an answer decodes (``answers``). docs/preview.md."""
