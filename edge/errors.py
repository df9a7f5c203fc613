"""Exceptions that carry the one-line messages users see.

Every error a user can cause (a bad file, a bad bundle, a missing runtime) is raised as a
subclass of :class:`ShelfscanError`, whose ``str()`` is a single line naming the problem; CLIs
print exactly that line and exit non-zero instead of showing a traceback.
"""

from __future__ import annotations


class ShelfscanError(Exception):
    """Base class for errors caused by input, configuration or environment, not by bugs."""


class BundleError(ShelfscanError):
    """A model bundle (or bare model + labels) is missing, malformed or inconsistent."""


class ImageError(ShelfscanError):
    """An image could not be read or decoded."""


class RuntimeUnavailableError(ShelfscanError):
    """No TFLite interpreter package could be imported."""


class DelegateError(ShelfscanError):
    """An external TFLite delegate (``model.delegate``, ``--delegate``) could not be loaded or applied."""
