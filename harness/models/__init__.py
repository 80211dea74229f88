"""Model families, loading, and the architecture surgery that ablation grids vary."""
