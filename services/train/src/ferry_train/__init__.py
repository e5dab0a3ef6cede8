"""Ferry train service: Training jobs: PyTorch Lightning workers, checkpoints, ONNX export, registration."""
