"""Generated protobuf/gRPC stubs for `protos/vitsrt/v1/tts.proto` (do not edit: run `make protos`).

The stubs are committed so that installing vitsrt needs no protoc; `tests/test_grpc_protos.py` regenerates
them into a temporary directory and fails when the committed copies are stale.
"""
