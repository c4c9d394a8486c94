"""Export of SubTransformers for deployment: model directories, ONNX graphs, runtimes, beam search."""
