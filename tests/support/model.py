"""Networks as tests need them."""

from __future__ import annotations


def with_trained_batch_norms(network, rng):
    """NETWORK with trained-looking batch norm statistics, not the identity a fresh batch norm holds.

    To test folding.
    """
    for layer in network.layers:
        if layer.name.endswith("_bn"):
            width = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 2, width),
                    rng.normal(0, 1, width),
                    rng.normal(0, 1, width),
                    rng.uniform(0.2, 3, width),
                ]
            )
    return network
