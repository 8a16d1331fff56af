"""Firmware export: the integer program as a C99 bundle for a Cortex-M4, built and checked under QEMU."""
