"""Ferry serve service: Inference gateway in front of NVIDIA Triton (KServe v2 / Open Inference Protocol)."""
