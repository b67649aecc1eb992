"""Serving a trained model: one ONNX graph for any runtime (`export`), and an HTTP server (`serve`)."""
