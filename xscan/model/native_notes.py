"""What native libraries (LiteRT, TensorFlow) write to standard error on their own, and holding it back from the user.

These notes come from C++ code writing to file descriptor 2 directly, so Python's warning filters
and loggers cannot stop them, and TensorFlow prints some of them (its oneDNN notice, on some CPUs)
whatever TF_CPP_MIN_LOG_LEVEL says. They are held back only for the call that starts the library.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

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


@contextmanager
def native_stderr_without(notes: Sequence[str | re.Pattern[str]]) -> Iterator[None]:
    """Within, what native code (or anything else) writes to file descriptor 2 is held back; after, it is passed on but for NOTES' lines.

    A note is a whole line, or a pattern a whole line must match.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [
                line
                for line in held.read().decode(errors="replace").splitlines(keepends=True)
                if not _is_note(line.rstrip("\n"), notes)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _is_note(line: str, notes: Sequence[str | re.Pattern[str]]) -> bool:
    return any(line == note if isinstance(note, str) else note.fullmatch(line) for note in notes)


def import_keras_quietly() -> Any:
    """Keras (and TensorFlow beneath it), imported without TensorFlow's start-up notices reaching the terminal.

    Only the first import in a process prints them; later calls cost a dictionary look-up. Only
    training, Grad-CAM and the conversion to LiteRT call it: scoring never imports TensorFlow.
    """
    if "keras" in sys.modules:
        return sys.modules["keras"]
    with native_stderr_without(TENSORFLOW_NOTES):
        import keras
        import tensorflow  # noqa: F401  (keras may defer its backend: the notices come with this import)
    return keras
