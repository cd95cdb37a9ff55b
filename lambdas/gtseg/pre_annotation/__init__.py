"""The pre-annotation feature: one Ground Truth data object in, its worker task (or the reason it
gets none) out.

``service`` answers a request; ``task`` holds the pure decisions; ``labels`` finds the label list;
``prelabel`` asks a model endpoint for a starting mask; ``settings`` reads the environment.
"""
