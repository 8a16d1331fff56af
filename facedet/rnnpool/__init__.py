"""FastGRNN and the RNNPool operator."""

from facedet.rnnpool.fastgrnn import FastGRNNCell
from facedet.rnnpool.rnnpool import RNNPool, RNNPoolLayer

__all__ = ["FastGRNNCell", "RNNPool", "RNNPoolLayer"]
