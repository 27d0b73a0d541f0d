"""The slow path (Gatys et al.): optimise the pixels against VGG losses (Adam, L-BFGS, tiled
loss).
"""
