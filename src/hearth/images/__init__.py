"""Images: generations, edits and variations on a local diffusion model."""
