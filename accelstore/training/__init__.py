"""Self-supervised pre-training: the run configuration (torch-free, the command line is built from it) and the DDP trainer."""
