"""Planning: planners over action sequences (optax style) and objective terms."""
