"""One module per phase: each takes an encoder, data and its config, and trains the encoder in place."""
