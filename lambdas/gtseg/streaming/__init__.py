"""Streaming labeling jobs, the shipped part: each labeled object Ground Truth announces on the
output topic is finalized into the job's streaming dataset (``output``; docs/streaming.md)."""
