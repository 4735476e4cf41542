"""Training the bundled model: the data set and its split, augmentation, robustness shifts, fitting."""
