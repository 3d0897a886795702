"""The numpy pieces: ``mlp`` (MLP with backprop, Adam), ``policy`` (policy + value), ``learner``."""
