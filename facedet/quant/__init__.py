"""The integer program: quantization, its arithmetic, and a numpy interpreter (docs/quantization.md)."""
