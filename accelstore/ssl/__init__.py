"""Self-supervised pre-training and evaluation: the harnet model, pretext tasks, trainer, evaluation."""
