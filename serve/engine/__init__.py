"""The synthesis engine: per-voice pipelines over stage backends, a batching scheduler, exact streaming."""
