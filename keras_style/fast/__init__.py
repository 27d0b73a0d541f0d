"""The fast path (Johnson et al.): one forward pass of a trained network, bundled styles, video."""
