"""Images as content: safe decoding, rendering for the simulator, named transforms, and OCR."""
