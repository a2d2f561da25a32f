"""Google Cloud adapters, imported only when configured."""
