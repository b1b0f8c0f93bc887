"""The gRPC front door of the engine: `vitsrt.v1.TextToSpeech` server (grpc.aio) and a small client.

Kept free of torch and of the engine implementation at import time: `server` imports the engine only when
a server is built from voice directories.
"""
