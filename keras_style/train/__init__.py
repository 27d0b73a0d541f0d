"""Training the fast network: config, the perceptual-loss keras.Model, data pipelines,
checkpoints.
"""
