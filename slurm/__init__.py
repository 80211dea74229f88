"""gridlab slurm layer."""
