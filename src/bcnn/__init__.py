"""bcnn: binary CNNs to bit-exact, fully pipelined FPGA accelerators."""

__version__ = "0.1.0"
