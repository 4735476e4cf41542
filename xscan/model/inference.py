"""The scoring network's runtime: the LiteRT file `xscan train` wrote, run by LiteRT's interpreter alone (no TF).

LiteRT's XNNPACK kernels run the folded ensemble at about 1.4 ms an image on one thread of the
2-core machine, where TensorFlow's own kernels took about 4 ms; and a process that scores never
imports TensorFlow, which was most of a run's start-up time and memory (benchmarks/README.md).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

from xscan.input.native_stderr import native_stderr_without
from xscan.model.native_notes import XNNPACK_NOTE


class CompiledNetwork:
    """A LiteRT flatbuffer of one input and one joined output, for batches of its fixed batch size.

    The parts of the joined output are named in order with the width of each (the card's
    `litert.outputs`); `run` returns them by name as numpy arrays of shape (batch, width).
    """

    def __init__(self, flatbuffer: bytes, outputs: Mapping[str, int], threads: int = 1) -> None:
        """Load the flatbuffer into a LiteRT interpreter, XNNPACK's note kept off stderr.

        Args:
            flatbuffer: The LiteRT file's bytes.
            outputs: The parts of the joined output in order, with the width of each.
            threads: The interpreter's threads (at least 1).
        """
        from ai_edge_litert.interpreter import Interpreter

        with native_stderr_without([XNNPACK_NOTE]):
            self._interpreter = Interpreter(model_content=flatbuffer, num_threads=max(threads, 1))
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._widths = dict(outputs)
        # One interpreter is not safe to call from two threads at once (its input and output buffers are its
        # own): `xscan listen` scores on one thread and draws heatmap images on another with the same network.
        self._calling = threading.Lock()
        self.batch = int(self._input["shape"][0])
        if int(self._interpreter.get_output_details()[0]["shape"][1]) != sum(self._widths.values()):
            raise ValueError(
                f"the LiteRT file's output has {self._interpreter.get_output_details()[0]['shape'][1]} values "
                f"a scan, its card says {sum(self._widths.values())}"
            )

    @property
    def outputs(self) -> list[str]:
        """The names of the network's outputs, in the card's order."""
        return list(self._widths)

    def run(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Run the network on one batch.

        Args:
            inputs: Exactly `batch` model inputs.

        Returns:
            The outputs by the card's names (views of one array: no copy).
        """
        with self._calling:
            self._interpreter.set_tensor(self._input["index"], np.ascontiguousarray(inputs, np.float32))
            self._interpreter.invoke()
            joined = self._interpreter.get_tensor(self._output)  # a copy, so the next call cannot change it
        outputs, start = {}, 0
        for name, width in self._widths.items():
            outputs[name] = joined[:, start : start + width]
            start += width
        return outputs
