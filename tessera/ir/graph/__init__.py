"""Graph IR: SSA tensor ops over symbolic shapes, one straight-line function per @jit entry."""
