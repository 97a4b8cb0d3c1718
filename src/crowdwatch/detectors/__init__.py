"""Person detector backends (ONNX Runtime, Ultralytics) behind one `Detector` protocol, and the
catalog of model weights they load. Backends import their heavy libraries lazily."""
