"""The model: the network, its card, the runtime that runs it, the scorer and the out-of-scope check."""
