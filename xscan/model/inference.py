"""The scoring network's runtime: a Keras model converted once (on a Scorer's first batch) to a LiteRT interpreter of one batch shape.

TensorFlow's own kernels ran the folded ensemble at about 4 ms an image on one thread of the
2-core machine; LiteRT's XNNPACK kernels run the same graph at about 1.8 ms (benchmarks/README.md).
The outputs agree with TensorFlow's to about 1e-6 (tests/test_inference.py). The conversion takes
well under a second and needs no file: the weights file stays the one `xscan train` wrote.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

# Written by LiteRT's C++ core to standard error whenever an interpreter starts: not for users.
XNNPACK_NOTE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


class CompiledNetwork:
    """MODEL (a Keras model of one input and one or more outputs) for batches of exactly BATCH inputs, on THREADS threads.

    `run` returns the model's outputs as numpy arrays, in the model's order.
    """

    def __init__(self, model: Any, batch: int, threads: int = 1) -> None:
        import tensorflow as tf
        from ai_edge_litert.interpreter import Interpreter

        input_shape = [batch, *model.inputs[0].shape[1:]]
        self._shapes = [tuple(output.shape[1:]) for output in model.outputs]  # each output's shape for one input, in order

        # One output, the model's outputs flattened side by side: no guessing which interpreter output is which.
        def joined(inputs: Any) -> Any:
            outputs = model(inputs, training=False)
            outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
            return tf.concat([tf.reshape(output, [batch, -1]) for output in outputs], axis=1)

        function = tf.function(joined, input_signature=[tf.TensorSpec(input_shape, tf.float32)])
        flat = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function).convert()
        with native_stderr_without([XNNPACK_NOTE]):
            self._interpreter = Interpreter(model_content=flat, num_threads=max(threads, 1))
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self.batch = batch

    def run(self, inputs: np.ndarray) -> list[np.ndarray]:
        """The model's outputs for exactly `batch` INPUTS."""
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(inputs, np.float32))
        self._interpreter.invoke()
        joined = self._interpreter.get_tensor(self._output)
        outputs, start = [], 0
        for shape in self._shapes:
            width = int(np.prod(shape))
            outputs.append(joined[:, start : start + width].reshape(len(joined), *shape))
            start += width
        return outputs


@contextmanager
def native_stderr_without(notes: Sequence[str]) -> Iterator[None]:
    """Within, what native code (or anything else) writes to file descriptor 2 is held back; after, it is passed on but for NOTES' lines."""
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
            kept = [line for line in held.read().decode(errors="replace").splitlines(keepends=True)
                    if line.rstrip("\n") not in notes]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
