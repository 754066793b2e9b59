"""bcnn: binary CNNs to bit-exact, fully pipelined FPGA accelerators."""

import warnings

__version__ = "0.1.0"

# Brevitas says so when it loads, in every command that trains or exports; bcnn does not use that kernel
warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
