"""The `train` extra, TensorFlow and Keras: what training, Grad-CAM and the LiteRT conversion need; scoring does not.

`pip install xscan` leaves them out (about 600 MB); a command that needs them checks first, so that
their absence is one clear message naming the extra instead of a traceback. A usage error (exit 2),
as for the `pacs` extra of `xscan sr` and the `ray` extra of `score --ray`: the command was asked
for something this installation was not set up to do, and the fix is the user's (an install),
not a fault of xscan's (exit 3).
"""

from __future__ import annotations

from xscan.errors import UsageError

INSTALL_HINT = "pip install 'xscan[train]'"


class TrainExtraMissing(UsageError, ImportError):
    """TensorFlow or Keras is not installed; also an ImportError, for callers that already go on without them."""


def require_train_extra(what: str) -> None:
    """Raise TrainExtraMissing, naming the extra to install, unless Keras and TensorFlow import.

    Imports them (quietly, as every caller would next), so that a package that is present but cannot
    be imported is caught here too.

    Args:
        what: what needs them, for the message (e.g. "xscan train").

    Raises:
        TrainExtraMissing: Keras or TensorFlow cannot be imported.
    """
    from xscan.model.native_notes import import_keras_quietly

    try:
        import_keras_quietly()
    except ImportError as error:
        raise TrainExtraMissing(
            f"{what} needs TensorFlow and Keras, which cannot be imported here ({error}): {INSTALL_HINT}"
        ) from None
