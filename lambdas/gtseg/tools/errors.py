"""The one error the after-the-job tools raise for a problem that stops the whole run."""

from __future__ import annotations


class ToolError(RuntimeError):
    """A problem that stops the whole run (bad arguments, ambiguous label attribute); the message
    says what to change. Problems of one line or one object are reported, not raised."""
