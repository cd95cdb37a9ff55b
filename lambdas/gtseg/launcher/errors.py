"""Why a job was not launched, beyond the spec itself (``SpecError``, in ``gtseg.launcher.spec``)."""

from __future__ import annotations


class LaunchError(RuntimeError):
    """A job that could not be started for a reason other than the spec itself."""


class LaunchConfigError(LaunchError):
    """The stack's settings (environment variables or CLI flags) are missing or malformed."""


class LaunchConflictError(LaunchError):
    """A labeling job with this name exists but was not started from this spec."""
