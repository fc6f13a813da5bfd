// Quant module
