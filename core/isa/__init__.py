"""The NPU instruction set: table (definition), classes, encoding, program container, assembly."""
