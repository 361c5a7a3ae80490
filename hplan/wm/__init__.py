"""World models: modules, JEPA training, critics, the stack and its diagnostics."""
