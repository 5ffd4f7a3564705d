"""Target IR: explicit per-lane SSA code with address spaces, vector types and intrinsics; every
emitter in tessera/codegen prints it for one target."""
