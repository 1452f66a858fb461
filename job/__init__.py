"""The program inside the container: data, model, losses, training, evaluation, export.

Imports MindSpore (lazily, where needed); never imports kubernetes.
"""
