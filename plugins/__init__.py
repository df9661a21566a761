"""gbench's built-in GAN variants, one module each, registered through gbench's public hooks."""
