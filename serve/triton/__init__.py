"""Triton Inference Server integration: the tensor layout shared by the model-repository generator, the
BLS model and the `triton` stage backend; the Python-backend model sources; a launcher for the
tritonserver binary that ships in the ``nvidia-pytriton`` wheel (tests and local runs)."""
