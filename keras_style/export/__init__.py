"""From a trained network to SavedModel and TFLite files: conversion, graph rewrites,
verification.
"""
