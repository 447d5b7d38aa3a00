"""Stage 06's library: the exported model and its contract.

Layered without a cycle (onnx <- safetensors; onnx <- cost <- variants; both <- winner), each module
importing only those above it:

- :mod:`songfeel.export.onnx`: the embedder with its in-graph log-mel front end as MECOMP's ONNX
  model (input ``audio`` float32 (batch, n_samples), mono 22050 Hz; output ``embedding`` float32
  (batch, 32), unit L2 norm), and its parity with torch;
- :mod:`songfeel.export.cost`: × real time on one core of every method against MECOMP's model;
- :mod:`songfeel.export.safetensors`: the weights as safetensors and a JSON specification of the
  preprocessing and the architecture, with reference values, for a port without Python;
- :mod:`songfeel.export.variants`: fp16 and int8 ONNX variants, and their comparison with fp32;
- :mod:`songfeel.export.winner`: stage 06's work: pick the winner, export it, measure it.
"""
