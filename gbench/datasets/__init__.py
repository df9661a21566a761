"""Where training data and references come from: toy mixtures, CIFAR images, sample files."""
