"""Distillation: slow-method stylizations as a dataset, and training the fast network on them."""
