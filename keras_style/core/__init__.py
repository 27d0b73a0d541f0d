"""Shared building blocks: image I/O and file safety, VGG features, losses, layers, the
transformer network, image metrics.
"""
