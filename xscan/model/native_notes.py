"""The notes native libraries (LiteRT, TensorFlow) write to standard error on their own, which users never see.

These notes come from C++ code writing to file descriptor 2 directly, so Python's warning filters
and loggers cannot stop them, and TensorFlow prints some of them (its oneDNN notice, on some CPUs)
whatever TF_CPP_MIN_LOG_LEVEL says. They are dropped (`native_stderr.native_stderr_without`) only
for the call that starts the library; any other line it writes still reaches standard error.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from xscan.input.native_stderr import native_stderr_without

# Written by LiteRT's C++ core whenever an interpreter starts: not for users.
XNNPACK_NOTE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."

# What TensorFlow's import prints on a CPU like this one's (absl's pre-initialisation banner, the CPU
# feature and oneDNN notices with their continuation line); an error or warning of its own still passes.
TENSORFLOW_NOTES = (
    re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    re.compile(r"I\d{4} [\d:. ]+\d+ (cpu_feature_guard|port)\.cc:\d+\] .*"),
    re.compile(r"To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\."),
    re.compile(r".*oneDNN custom operations are on\..*"),
    re.compile(r".*TF_ENABLE_ONEDNN_OPTS=0.*"),
)

# What TensorFlow's converter to LiteRT prints while converting (absl's info and warning lines of its graph passes).
CONVERTER_NOTES = (
    *TENSORFLOW_NOTES,
    re.compile(
        r"[IW]\d{4} [\d:. ]+\d+ (devices|single_machine|tf_tfl_flatbuffer_helpers|flatbuffer_export)\.cc:\d+\] .*"
    ),
)


def import_keras_quietly() -> Any:
    """Import Keras (and TensorFlow beneath it) without TensorFlow's start-up notices reaching the terminal.

    Only the first import in a process prints them; later calls cost a dictionary look-up. Only
    training, Grad-CAM and the conversion to LiteRT call it: scoring never imports TensorFlow.

    Returns:
        The `keras` module.
    """
    if "keras" in sys.modules:
        return sys.modules["keras"]
    with native_stderr_without(TENSORFLOW_NOTES):
        import keras
        import tensorflow  # noqa: F401  (keras may defer its backend: the notices come with this import)
    return keras
